"""POST /v1/project: the latent (and label) whose image is closest to each uploaded image."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from app.api.deps import LanesDep, MetricsDep, PoolDep, ProjectorDep, SettingsDep
from app.api.discriminate import REQUEST_BODY as IMAGES_BODY
from app.api.discriminate import read_images
from app.api.responses import model_headers
from app.api.schemas import ERRORS, Projected, ProjectJson, ProjectOptions, ProjectResponse
from app.serving.projection import Budget, Projection
from app.settings import Settings
from core import imaging
from core.errors import InvalidInput, LimitExceeded

router = APIRouter(tags=["project"], responses=ERRORS)

_FORM = IMAGES_BODY["content"]["multipart/form-data"]["schema"]  # type: ignore[index]
REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                **_FORM,
                "properties": {
                    **_FORM["properties"],
                    "steps": {"type": "integer"},
                    "restarts": {"type": "integer"},
                    "distance": {"type": "string", "enum": ["pixel", "features"]},
                    "seed": {"type": "integer"},
                },
            }
        },
        "application/json": {"schema": ProjectJson.model_json_schema()},
        "application/x-npy": {
            "schema": {"type": "string", "format": "binary"},
            "description": "uint8 [N, H, W, C]; the other fields as query parameters",
        },
    },
}


@router.post("/v1/project", openapi_extra={"requestBody": REQUEST_BODY})
async def project(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    lanes: LanesDep,
    projector: ProjectorDep,
    response: Response,
    model: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
    labels: Annotated[str | None, Query(description="npy: comma-separated labels")] = None,
    resize: Annotated[bool, Query()] = False,
    steps: Annotated[int | None, Query(ge=1)] = None,
    restarts: Annotated[int | None, Query(ge=1)] = None,
    distance: Annotated[Literal["pixel", "features"] | None, Query()] = None,
    seed: Annotated[int | None, Query(ge=0)] = None,
) -> ProjectResponse:
    """Per image: the latent and label whose reconstruction is closest, the reconstruction,
    its distance and the steps taken. The latent, given to ``/v1/interpolate`` or to
    ``/v1/sample`` (``latents``, with the label), draws the reconstruction byte for byte."""
    query = {
        "model": model,
        "version": version,
        "labels": labels,
        "resize": str(resize),
        **{k: None if v is None else str(v) for k, v in (("steps", steps), ("restarts", restarts))},
        "distance": distance,
        "seed": None if seed is None else str(seed),
    }
    upload = await read_images(request, pool, settings, lanes, ProjectJson, query)
    options = upload.body or _options(upload.fields)
    _check_limits(len(upload.images), options, settings)
    loaded = upload.model
    out = await projector.project(
        loaded,
        upload.images,
        options.labels,
        Budget(options.steps, options.restarts),
        options.distance,
        options.seed,
    )
    metrics.images_generated.labels(loaded.name, str(loaded.version)).inc(len(out.images))
    response.headers.update(model_headers(loaded))
    return ProjectResponse(
        model=loaded.name,
        version=loaded.version,
        distance=options.distance,
        results=await lanes.encoding.run(_results, out),
    )


def _options(fields: dict[str, str]) -> ProjectOptions:
    """The search's fields from a form or a query (text, so validated leniently)."""
    raw: dict[str, object] = {k: v for k, v in fields.items() if k in ProjectOptions.model_fields}
    if "labels" in raw:
        raw["labels"] = str(raw["labels"]).split(",")
    try:
        return ProjectOptions.model_validate(raw, strict=False)
    except ValidationError as e:
        first = e.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else None
        raise InvalidInput(f"{where or 'fields'}: {first['msg']}", field=where) from e


def _check_limits(images: int, options: ProjectOptions, settings: Settings) -> None:
    for field, value, limit in (
        ("images", images, settings.max_project_images),
        ("steps", options.steps, settings.max_project_steps),
        ("restarts", options.restarts, settings.max_project_restarts),
    ):
        if value > limit:
            raise LimitExceeded(f"{field}={value} is over the limit of {limit}", field=field)


def _results(out: Projection) -> list[Projected]:
    return [
        Projected(
            latent=out.latents[i].tolist(),
            label=None if out.labels is None else int(out.labels[i]),
            png=base64.b64encode(imaging.encode_png(out.images[i])).decode(),
            distance=float(out.distances[i]),
            steps=out.steps,
        )
        for i in range(len(out.images))
    ]
