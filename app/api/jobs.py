"""Jobs over HTTP: submit a retraining, watch any job (JSON, server-sent events), cancel, resume.

Exports are jobs too; ``app/api/exports.py`` starts them and serves what they make."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse

from app.api.deps import JobId, JobServiceDep, JobStoreDep, require_admin, require_json
from app.api.schemas import ERRORS, JobList, JobRequest, Preset
from app.jobs import service
from app.jobs.store import TERMINAL, Job, JobStore, State
from core.errors import NotFound
from training import events

router = APIRouter(tags=["jobs"], responses=ERRORS)


@router.post(
    "/v1/jobs", status_code=202, dependencies=[Depends(require_admin), Depends(require_json)]
)
async def submit(body: JobRequest, jobs: JobServiceDep, response: Response) -> Job:
    """Validate the config, then queue it; 202 with the job and its Location."""
    job = await asyncio.to_thread(
        jobs.submit,
        body.model,
        body.preset,
        body.overrides,
        body.base_version,
        body.dataset,
        body.promote,
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.get("/v1/presets")
async def list_presets() -> list[Preset]:
    """The configs a job can start from (training/configs), with every field filled in."""
    configs = await asyncio.to_thread(service.presets)
    return [
        Preset(
            name=name,
            architecture=cfg.architecture,
            conditional=cfg.conditional,
            max_steps=cfg.max_steps,
            config=cfg.model_dump(mode="json"),
        )
        for name, cfg in configs.items()
    ]


@router.get("/v1/jobs")
async def list_jobs(
    store: JobStoreDep,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    """Newest first."""
    jobs = await asyncio.to_thread(store.list, state)
    return JobList(jobs=jobs[offset : offset + limit], total=len(jobs))


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: JobId, store: JobStoreDep) -> Job:
    return await asyncio.to_thread(store.get, job_id)


@router.delete("/v1/jobs/{job_id}", dependencies=[Depends(require_admin)])
async def cancel(job_id: JobId, jobs: JobServiceDep) -> Job:
    """A queued job is cancelled at once; a running one checkpoints, stops, publishes nothing."""
    return await asyncio.to_thread(jobs.cancel, job_id)


@router.post("/v1/jobs/{job_id}/resume", dependencies=[Depends(require_admin)])
async def resume(job_id: JobId, jobs: JobServiceDep) -> Job:
    """Queue a cancelled or failed job again: a training goes on from its checkpoint, an export
    from its last finished shard."""
    return await asyncio.to_thread(jobs.resume, job_id)


@router.get("/v1/jobs/{job_id}/samples.png", response_class=FileResponse)
async def samples(job_id: JobId, store: JobStoreDep) -> FileResponse:
    await asyncio.to_thread(store.get, job_id)
    path = store.folder(job_id).run.samples
    if not path.is_file():
        raise NotFound(f"job {job_id} has no samples yet")
    return FileResponse(path, media_type="image/png")


@router.get("/v1/jobs/{job_id}/log", response_class=PlainTextResponse)
async def job_log(job_id: JobId, store: JobStoreDep) -> PlainTextResponse:
    await asyncio.to_thread(store.get, job_id)
    path = store.folder(job_id).log
    text = path.read_text(errors="replace") if path.is_file() else ""
    return PlainTextResponse(text[-1_000_000:])


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(job_id: JobId, store: JobStoreDep, request: Request) -> StreamingResponse:
    """Server-sent events: every training event as it happens, then the final job record."""
    await asyncio.to_thread(store.get, job_id)
    return StreamingResponse(
        _stream(store, job_id, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(store: JobStore, job_id: str, request: Request) -> AsyncIterator[str]:
    stats = store.folder(job_id).run.stats
    offset = 0
    last_state = None
    while not await request.is_disconnected():
        job = await asyncio.to_thread(store.get, job_id)
        if stats.is_file():
            with open(stats, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            offset += len(complete)
            for line in complete.decode().splitlines():
                event = events.decode(line)
                if event is not None:
                    yield f"event: {event['event']}\ndata: {line}\n\n"
        if job.state != last_state:
            last_state = job.state
            yield f"event: state\ndata: {job.model_dump_json()}\n\n"
        if job.state in TERMINAL:
            return
        await asyncio.sleep(0.25)
