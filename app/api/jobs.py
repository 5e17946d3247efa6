"""Jobs over HTTP: retrainings and bulk exports. Submit either, watch any job (JSON, server-sent
events), cancel and resume it; read an export's manifest and download its shards as soon as
each is finished, with range requests, so a client resumes a cut download where it stopped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse

from app.api.deps import JobId, JobServiceDep, JobStoreDep, require_admin, require_json
from app.api.schemas import ERRORS, ExportRequest, JobList, JobRequest, Preset
from app.exports.manifest import ExportFiles, finished, manifest
from app.jobs import service
from app.jobs.store import TERMINAL, Job, JobStore, State
from core.errors import NotFound
from core.identifiers import shown
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
        body.promote_on,
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


# --- exports: jobs of kind "export" --------------------------------------------------------


@router.post(
    "/v1/exports",
    status_code=202,
    tags=["exports"],
    dependencies=[Depends(require_admin), Depends(require_json)],
)
async def start_export(body: ExportRequest, jobs: JobServiceDep, response: Response) -> Job:
    """Queue an export of ``n`` images of a version; 202 with the job and its Location."""
    fields = body.model_dump(exclude={"version"})
    job = await asyncio.to_thread(jobs.submit_export, fields, body.version)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.get("/v1/exports", tags=["exports"])
async def list_exports(
    store: JobStoreDep,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    """Export jobs, newest first."""
    jobs = [j for j in await asyncio.to_thread(store.list, state) if j.kind == "export"]
    return JobList(jobs=jobs[offset : offset + limit], total=len(jobs))


@router.get("/v1/exports/{job_id}/manifest.json", tags=["exports"])
async def export_manifest(job_id: JobId, store: JobStoreDep) -> dict[str, Any]:
    """The seeds, label rule and counts, and every finished shard with its sha256; ``complete``
    is false while shards are still being made."""
    files = await _files(store, job_id)
    try:
        return await asyncio.to_thread(manifest, files)
    except FileNotFoundError as e:  # a record whose folder was lost
        raise NotFound(f"export {job_id} has no files") from e


@router.get(
    "/v1/exports/{job_id}/shards/{name}",
    tags=["exports"],
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "the range asked for"},
    },
)
async def shard(job_id: JobId, name: str, store: JobStoreDep) -> FileResponse:
    """A finished shard, never changing: a strong ETag (its sha256) and ranges."""
    files = await _files(store, job_id)
    entry = (await asyncio.to_thread(finished, files)).get(name)  # only the index's names
    if entry is None:
        raise NotFound(f"export {job_id} has no finished shard {shown(name)}")
    media = "application/x-tar" if name.endswith(".tar") else "application/octet-stream"
    return FileResponse(
        files.shard(name),
        media_type=media,
        filename=name,
        headers={
            "ETag": json.dumps(entry["sha256"]),
            "Cache-Control": "public, max-age=31536000, immutable",
        },
    )


@router.delete(
    "/v1/exports/{job_id}",
    status_code=204,
    tags=["exports"],
    dependencies=[Depends(require_admin)],
)
async def delete_export(job_id: JobId, jobs: JobServiceDep) -> Response:
    """Remove an export that has ended (succeeded, failed or cancelled) and its files; a queued
    or running one is a 409: cancel it first."""
    await asyncio.to_thread(jobs.delete_export, job_id)
    return Response(status_code=204)


async def _files(store: JobStore, job_id: str) -> ExportFiles:
    job = await asyncio.to_thread(store.get, job_id)
    if job.kind != "export":
        raise NotFound(f"job {job_id} is not an export")
    return store.folder(job_id).export
