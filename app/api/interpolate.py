"""POST /v1/interpolate: a walk through latent space between two seeds or vectors."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Response

from app.api.deps import LanesDep, MetricsDep, PoolDep, SettingsDep, require_json
from app.api.responses import binary, model_headers, off_loop
from app.api.schemas import ERRORS, Frame, InterpolateRequest, InterpolateResponse
from app.serving import generation
from core import imaging
from core.errors import LimitExceeded

router = APIRouter(tags=["interpolate"], responses=ERRORS)

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InterpolateResponse,  # format=json
        "description": "png strip, animated gif/webp, json frames, or npy uint8 [steps, H, W, C]",
        "content": {
            "image/png": {},
            "image/gif": {},
            "image/webp": {},
            "application/x-npy": {},
        },
    }
}


@router.post(
    "/v1/interpolate",
    responses=RESPONSES,
    response_class=Response,
    dependencies=[Depends(require_json)],
)
async def interpolate(
    body: InterpolateRequest,
    pool: PoolDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    lanes: LanesDep,
) -> Response:
    """Frames from ``from`` to ``to`` (both included), by lerp or slerp."""
    if body.steps > settings.max_steps:
        raise LimitExceeded(
            f"steps={body.steps} is over the limit of {settings.max_steps}", field="steps"
        )
    generation.check_truncation(body.truncation, settings.min_truncation)
    model = await pool.get(body.model, body.version)
    m = model.manifest
    a = generation.endpoint_latent(m, body.start.seed, body.start.latent, body.truncation)
    b = generation.endpoint_latent(m, body.end.seed, body.end.latent, body.truncation)
    t, frames = await generation.interpolate(model, a, b, body.steps, body.method, body.label)
    metrics.images_generated.labels(model.name, str(model.version)).inc(len(frames))
    if body.format == "json":
        content = InterpolateResponse(
            model=model.name,
            version=model.version,
            method=body.method,
            frames=await off_loop(lanes.encoding, _frames, t, frames, pixels=frames),
        )
        return Response(
            content.model_dump_json(), media_type="application/json", headers=model_headers(model)
        )
    encode = {
        "png": lambda f: imaging.encode_png(imaging.strip(f)),
        "gif": lambda f: imaging.encode_gif(f, body.duration_ms),
        "webp": lambda f: imaging.encode_animated_webp(f, body.duration_ms),
        "npy": imaging.encode_npy,
    }[body.format]
    small = frames if body.format in ("png", "npy") else None  # GIF and WebP cost more per byte
    return binary(await off_loop(lanes.encoding, encode, frames, pixels=small), body.format, model)


def _frames(t: np.ndarray, frames: np.ndarray) -> list[Frame]:
    return [
        Frame(t=float(ti), png=base64.b64encode(imaging.encode_png(f)).decode())
        for ti, f in zip(t, frames, strict=True)
    ]
