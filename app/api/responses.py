"""Encoding results into responses: one place for media types and model headers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from fastapi import Response

from app.lanes import Lane
from app.serving.pool import LoadedModel

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


# An encode in a worker thread still holds the GIL for all but its zlib part, so the thread
# frees the loop only for big images. For pixels this small (as PNG, a PNG per image, or a zip
# of PNGs) the hand-off costs the loop more than it frees: about 120 µs under load, two GIL
# hand-overs and a future, where one 28 x 28 PNG takes 30 µs (README, Benchmarks).
INLINE_PIXEL_BYTES = 8 * 1024


async def off_loop(
    lane: Lane, fn: Callable[..., T], *args: object, pixels: np.ndarray | None = None
) -> T:
    """``fn(*args)`` on the lane's threads, as encoding a big batch would stall the loop; on
    the loop itself when ``pixels``, what ``fn`` encodes, are at most ``INLINE_PIXEL_BYTES``."""
    if pixels is not None and pixels.nbytes <= INLINE_PIXEL_BYTES:
        return fn(*args)
    return await lane.run(fn, *args)


def binary(
    body: bytes, fmt: str, model: LoadedModel, extra: dict[str, str] | None = None
) -> Response:
    response = Response(body)  # Content-Length alone: the rest is known per model and format
    response.raw_headers += _binary_headers(model.name, model.version, fmt)
    response.raw_headers += [
        (k.lower().encode(), v.encode("latin-1")) for k, v in (extra or {}).items()
    ]
    return response


@functools.lru_cache(maxsize=256)
def _binary_headers(name: str, version: int, fmt: str) -> list[tuple[bytes, bytes]]:
    # Encoded once, not per response: n=1 requests spent more on headers than on the npy body.
    headers = {"content-type": MEDIA[fmt], "x-model": name, "x-model-version": str(version)}
    if fmt in ("npy", "zip"):
        headers["content-disposition"] = f'attachment; filename="{name}-v{version}.{fmt}"'
    return [(key.encode(), value.encode("latin-1")) for key, value in headers.items()]
