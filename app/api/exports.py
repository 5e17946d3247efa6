"""Bulk exports over HTTP: start one, list them, read the manifest, download shards.

An export is a job (``kind: "export"``): watch it, cancel it and resume it under
``/v1/jobs/{id}`` like a retraining. Its shards can be downloaded as soon as each is finished,
with range requests, so a client resumes a cut download where it stopped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import FileResponse

from app.api.deps import JobId, JobServiceDep, JobStoreDep, require_admin, require_json
from app.api.schemas import ERRORS, ExportRequest, JobList
from app.exports.manifest import ExportFiles, finished, manifest
from app.jobs.store import Job, JobStore, State
from core.errors import NotFound

router = APIRouter(tags=["exports"], responses=ERRORS)


@router.post(
    "/v1/exports", status_code=202, dependencies=[Depends(require_admin), Depends(require_json)]
)
async def start(body: ExportRequest, jobs: JobServiceDep, response: Response) -> Job:
    """Queue an export of ``n`` images of a version; 202 with the job and its Location."""
    fields = body.model_dump(exclude={"version"})
    job = await asyncio.to_thread(jobs.submit_export, fields, body.version)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.get("/v1/exports")
async def list_exports(
    store: JobStoreDep,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    """Export jobs, newest first."""
    jobs = [j for j in await asyncio.to_thread(store.list, state) if j.kind == "export"]
    return JobList(jobs=jobs[offset : offset + limit], total=len(jobs))


@router.get("/v1/exports/{job_id}/manifest.json")
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
        raise NotFound(f"export {job_id} has no finished shard {name}")
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


async def _files(store: JobStore, job_id: str) -> ExportFiles:
    job = await asyncio.to_thread(store.get, job_id)
    if job.kind != "export":
        raise NotFound(f"job {job_id} is not an export")
    return store.folder(job_id).export
