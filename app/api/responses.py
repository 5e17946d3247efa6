"""Encoding results into responses: one place for media types and model headers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from fastapi import Response

from app.pool import LoadedModel

T = TypeVar("T")
MEDIA = {
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "npy": "application/x-npy",
    "zip": "application/zip",
}


def model_headers(model: LoadedModel) -> dict[str, str]:
    return {"X-Model": model.name, "X-Model-Version": str(model.version)}


async def off_loop(fn: Callable[..., T], *args: object) -> T:
    """Encode in a worker thread: PNG and zip encoding of big batches would stall the loop."""
    return await asyncio.to_thread(fn, *args)


def binary(
    body: bytes, fmt: str, model: LoadedModel, extra: dict[str, str] | None = None
) -> Response:
    headers = {**model_headers(model), **(extra or {})}
    if fmt in ("npy", "zip"):
        headers["Content-Disposition"] = (
            f'attachment; filename="{model.name}-v{model.version}.{fmt}"'
        )
    return Response(body, media_type=MEDIA[fmt], headers=headers)
