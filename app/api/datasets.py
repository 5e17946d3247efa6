"""Training datasets over HTTP: upload (admin) and list."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile

from app.api.deps import LanesDep, SettingsDep, require_admin
from app.api.schemas import ERRORS
from app.jobs.datasets import DatasetStore, UploadLimits
from core.errors import LimitExceeded

router = APIRouter(tags=["datasets"], responses=ERRORS)


@router.post("/v1/datasets", status_code=201, dependencies=[Depends(require_admin)])
async def upload(
    settings: SettingsDep,
    lanes: LanesDep,
    file: Annotated[UploadFile, File(description="a .zip of class folders, or an .npz")],
    name: Annotated[str, Form(max_length=128)] = "",
) -> dict[str, Any]:
    """Validate and store a dataset; its id goes in a job's ``dataset`` field."""
    limits = UploadLimits(
        max_bytes=settings.max_dataset_bytes,
        max_files=settings.max_dataset_files,
        max_unpacked_bytes=4 * settings.max_dataset_bytes,
        max_pixels=settings.max_dataset_pixels,
    )
    data = await file.read(settings.max_dataset_bytes + 1)
    await file.close()
    if len(data) > settings.max_dataset_bytes:
        raise LimitExceeded(f"the upload is over {settings.max_dataset_bytes} bytes", field="file")
    store = DatasetStore(settings.data_dir)
    return await lanes.uploads.run(store.add, name or (file.filename or "dataset"), data, limits)


@router.get("/v1/datasets")
async def list_datasets(settings: SettingsDep) -> list[dict[str, Any]]:
    return await asyncio.to_thread(DatasetStore(settings.data_dir).list)
