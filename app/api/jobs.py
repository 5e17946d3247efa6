"""Retraining jobs over HTTP: submit, watch (JSON, server-sent events), cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api.deps import RepoDep, SettingsDep, json_body, json_body_schema, require_admin
from app.api.schemas import ERRORS, ModelName
from app.datasets import DatasetStore
from app.errors import InvalidInput, NotFound, NotReady, TooManyRequests
from app.jobs import TERMINAL, Job, JobStore, Progress, Promote, State
from app.queue import JobQueue
from training.config import load_config, preset_names, preset_path

router = APIRouter(tags=["jobs"], responses=ERRORS)


async def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.state.queue
    return queue


QueueDep = Annotated[JobQueue, Depends(get_queue)]


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # as app.api.schemas._Body

    model: ModelName
    preset: str = Field("cdcgan", description="a config in training/configs, e.g. paper, cdcgan")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="config fields, dotted for nested: optimizer.lr_g"
    )
    base_version: int | None = Field(None, ge=1, description="fine-tune from this version")
    dataset: str | None = Field(None, description="an uploaded dataset id; default the digits")
    promote: Promote = "if_better"


class Preset(BaseModel):
    name: str
    architecture: str
    conditional: bool
    max_steps: int
    config: dict[str, Any] = Field(description="the full config a job starts from")


class JobList(BaseModel):
    jobs: list[Job]
    total: int


@router.post(
    "/v1/jobs",
    status_code=202,
    dependencies=[Depends(require_admin)],
    openapi_extra=json_body_schema(JobRequest),
)
async def submit(
    request: Request, queue: QueueDep, repo: RepoDep, settings: SettingsDep, response: Response
) -> Job:
    """Validate the config, then queue it; 202 with the job and its Location."""
    body = await json_body(request, JobRequest)
    overrides = dict(body.overrides)
    if body.dataset is not None:
        try:
            path = DatasetStore(settings.data_dir).path(body.dataset)
        except NotFound as e:
            raise InvalidInput(e.detail, field="dataset") from e
        overrides["dataset.source"] = str(path)
    try:
        cfg = load_config(preset_path(body.preset), overrides)
    except ValueError as e:  # unknown preset, or a config pydantic refuses
        raise InvalidInput(_config_error(e), field=_config_field(e, body.preset)) from e
    if cfg.max_steps > settings.max_job_steps:
        raise InvalidInput(
            f"max_steps={cfg.max_steps} is over the limit of {settings.max_job_steps}",
            field="overrides.max_steps",
        )
    if body.base_version is not None:
        _check_base(repo, body.model, body.base_version, cfg.model_dump(mode="json"))
    store = queue.store
    queued = await asyncio.to_thread(store.list, "queued")
    if len(queued) >= settings.max_queued_jobs:
        raise TooManyRequests(
            f"{len(queued)} jobs are queued already; the limit is {settings.max_queued_jobs}"
        )
    job = await asyncio.to_thread(
        store.create,
        model=body.model,
        preset=body.preset,
        overrides=body.overrides,
        base_version=body.base_version,
        dataset=body.dataset,
        promote=body.promote,
        progress=Progress(max_steps=cfg.max_steps),
    )
    config = json.dumps(cfg.model_dump(mode="json"))
    await asyncio.to_thread((store.dir(job.id) / "config.json").write_text, config)
    try:
        await asyncio.to_thread(queue.enqueue, job.id)
    except NotReady:  # the 503 says no job was made: leave no record that would never run
        await asyncio.to_thread(store.discard, job.id)
        raise
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.get("/v1/presets")
async def list_presets() -> list[Preset]:
    """The configs a job can start from (training/configs), with every field filled in."""
    return await asyncio.to_thread(_presets)


def _presets() -> list[Preset]:
    out = []
    for name in preset_names():
        cfg = load_config(preset_path(name))
        out.append(
            Preset(
                name=name,
                architecture=cfg.architecture,
                conditional=cfg.conditional,
                max_steps=cfg.max_steps,
                config=cfg.model_dump(mode="json"),
            )
        )
    return out


@router.get("/v1/jobs")
async def list_jobs(
    queue: QueueDep,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    """Newest first."""
    jobs = await asyncio.to_thread(queue.store.list, state)
    return JobList(jobs=jobs[offset : offset + limit], total=len(jobs))


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, queue: QueueDep) -> Job:
    return await asyncio.to_thread(queue.store.get, job_id)


@router.delete("/v1/jobs/{job_id}", dependencies=[Depends(require_admin)])
async def cancel(job_id: str, queue: QueueDep) -> Job:
    """A queued job is cancelled at once; a running one checkpoints, stops, publishes nothing."""
    return await asyncio.to_thread(queue.store.request_cancel, job_id)


@router.get("/v1/jobs/{job_id}/samples.png", response_class=FileResponse)
async def samples(job_id: str, queue: QueueDep) -> FileResponse:
    path = queue.store.dir(job_id) / "run" / "samples.png"
    await asyncio.to_thread(queue.store.get, job_id)
    if not path.is_file():
        raise NotFound(f"job {job_id} has no samples yet")
    return FileResponse(path, media_type="image/png")


@router.get("/v1/jobs/{job_id}/log", response_class=PlainTextResponse)
async def job_log(job_id: str, queue: QueueDep) -> PlainTextResponse:
    await asyncio.to_thread(queue.store.get, job_id)
    path = queue.store.dir(job_id) / "log.txt"
    text = path.read_text(errors="replace") if path.is_file() else ""
    return PlainTextResponse(text[-1_000_000:])


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(job_id: str, queue: QueueDep, request: Request) -> StreamingResponse:
    """Server-sent events: every training event as it happens, then the final job record."""
    await asyncio.to_thread(queue.store.get, job_id)
    return StreamingResponse(
        _stream(queue.store, job_id, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(store: JobStore, job_id: str, request: Request) -> AsyncIterator[str]:
    stats = store.dir(job_id) / "run" / "stats.jsonl"
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
                event = json.loads(line)
                yield f"event: {event.get('event', 'message')}\ndata: {line}\n\n"
        if job.state != last_state:
            last_state = job.state
            yield f"event: state\ndata: {job.model_dump_json()}\n\n"
        if job.state in TERMINAL:
            return
        await asyncio.sleep(0.25)


def _check_base(repo: Any, model: str, version: int, cfg: dict[str, Any]) -> None:
    try:
        base = repo.manifest(model, version)
    except NotFound as e:
        raise InvalidInput(e.detail, field="base_version") from e
    base_cfg = base.training.get("config", {})
    for key in ("architecture", "conditional", "latent_dim", "prior", "network"):
        if key in base_cfg and base_cfg[key] != cfg[key]:
            raise InvalidInput(
                f"{key} differs from base version {version} ({base_cfg[key]!r}): "
                "a fine-tune keeps the architecture",
                field="base_version",
            )


def _config_error(e: ValueError) -> str:
    if isinstance(e, ValidationError):
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return f"invalid config: {where}: {err['msg']}"
    return str(e)


def _config_field(e: ValueError, preset: str) -> str:
    if isinstance(e, ValidationError):
        return "overrides." + ".".join(str(p) for p in e.errors()[0]["loc"])
    return "preset"
