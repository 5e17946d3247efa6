"""POST /v1/sample and GET /v1/sample.png: images from seeds, or from latents a caller chose."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response

from app import cache
from app.api.deps import CacheDep, LanesDep, MetricsDep, PoolDep, SettingsDep, require_json
from app.api.fast_route import FastJsonRoute
from app.api.responses import binary, model_headers, off_loop
from app.api.schemas import ERRORS, SampleItem, SampleRequest, SampleResponse, Seed
from app.lanes import Lane
from app.metrics import Metrics
from app.serving import generation
from app.serving.pool import LoadedModel, ModelPool
from app.settings import Settings
from core import imaging
from core.errors import InvalidInput, LimitExceeded
from core.latent import request_seeds
from core.repository import parse_version

router = APIRouter(tags=["sample"], responses=ERRORS, route_class=FastJsonRoute)

PNG_GRID = {"description": "one PNG, or a grid of n", "content": {"image/png": {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": SampleResponse,  # format=json
        "description": "png: an image or a grid; json: base64 PNGs with seeds and labels; "
        "npy: uint8 [N, H, W, C]; zip: PNGs and manifest.json. From explicit seeds or latents: "
        "a strong ETag, and Cache-Control immutable for a version number, short for an alias",
        "content": {"image/png": {}, "application/x-npy": {}, "application/zip": {}},
    },
    304: {"description": "If-None-Match named this sample's ETag"},
}


@router.post(
    "/v1/sample",
    responses=RESPONSES,
    response_class=Response,
    dependencies=[Depends(require_json)],
)
async def sample(
    request: Request,
    body: SampleRequest,
    pool: PoolDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    lanes: LanesDep,
    responses: CacheDep,
) -> Response:
    """Generate n images; a seed names one image, whatever the batch it is drawn in."""
    served = Served(settings, metrics, lanes.encoding, responses)
    return await _sample(body, pool, served, request.headers.get("if-none-match"))


@router.get("/v1/sample.png", responses={200: PNG_GRID}, response_class=Response)
async def sample_png(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    lanes: LanesDep,
    responses: CacheDep,
    model: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
    n: Annotated[int, Query(ge=1)] = 1,
    seed: Annotated[Seed | None, Query()] = None,
    label: Annotated[int | None, Query()] = None,
    truncation: Annotated[float | None, Query(gt=0)] = None,
    cols: Annotated[int | None, Query(ge=1, le=1024)] = None,
) -> Response:
    """The same images as POST /v1/sample with format=png, for an ``<img src>``."""
    body = SampleRequest(
        model=model,
        version=version,
        n=n,
        seed=seed,
        labels=label,
        truncation=truncation,
        cols=cols,
        format="png",
    )
    served = Served(settings, metrics, lanes.encoding, responses)
    return await _sample(body, pool, served, request.headers.get("if-none-match"))


@dataclass(frozen=True)
class Served:
    """What drawing and answering a sample uses besides the request."""

    settings: Settings
    metrics: Metrics
    lane: Lane  # where big encodes run
    responses: cache.ResponseCache


async def _sample(
    body: SampleRequest, pool: ModelPool, served: Served, if_none_match: str | None
) -> Response:
    settings = served.settings
    if body.n > settings.max_n:
        raise LimitExceeded(f"n={body.n} is over the limit of {settings.max_n}", field="n")
    generation.check_truncation(body.truncation, settings.min_truncation)
    model = await pool.get(body.model, body.version)
    if body.seed is None and body.seeds is None and body.latents is None:
        return await _draw(body, model, served)  # random seeds: named by nothing, not cached
    # A version number named with its model never changes; an alias may move.
    version = body.version
    pinned = body.model is not None and version is not None and parse_version(version) is not None
    tag = cache.entity_tag(
        model.name, model.version, body.model_dump_json(exclude={"model", "version"}).encode()
    )
    control = cache.cache_control(pinned, settings.alias_max_age_s)
    if cache.matches(if_none_match, tag):
        return cache.not_modified(tag, control, model_headers(model))
    response = served.responses.get(tag)
    if response is None:
        response = await _draw(body, model, served)
        response.raw_headers.append((b"etag", tag.encode()))
        served.responses.put(tag, response)
    # The same bytes whether a version number or an alias named them; how long they may be
    # kept is this request's.
    response.raw_headers.append((b"cache-control", control.encode()))
    return response


async def _draw(body: SampleRequest, model: LoadedModel, served: Served) -> Response:
    lane = served.lane
    if body.latents is not None:
        out = await generation.from_latents(model, body.latents, body.labels)
    else:
        try:
            seeds = request_seeds(body.n, body.seed, body.seeds)
        except ValueError as e:
            raise InvalidInput(str(e), field="seed") from e
        out = await generation.sample(
            model, seeds, body.labels, body.truncation, with_latents=body.return_latents
        )
    served.metrics.images_generated.labels(model.name, str(model.version)).inc(len(out.images))
    headers = _seed_headers(out)
    if body.format == "npy":
        return binary(imaging.encode_npy(out.images), "npy", model, headers)
    if body.format == "png":
        png = await off_loop(lane, _png, out.images, body.cols, pixels=out.images)
        return binary(png, "png", model, headers)
    if body.format == "zip":
        zipped = await off_loop(lane, _zip, out, model.name, model.version, pixels=out.images)
        return binary(zipped, "zip", model, headers)
    items = await off_loop(lane, _items, out, pixels=out.images)
    content = SampleResponse(model=model.name, version=model.version, images=items)
    return Response(
        content.model_dump_json(),
        media_type="application/json",
        headers={**model_headers(model), **headers},
    )


def _seed_headers(out: generation.Samples) -> dict[str, str]:
    headers = {"X-Count": str(len(out.images))}
    if out.seeds is not None:
        headers["X-Seed"] = str(out.seeds[0])
    if out.labels is not None:
        headers["X-Labels"] = ",".join(map(str, out.labels.tolist()))
    return headers


def _png(images: np.ndarray, cols: int | None) -> bytes:
    if len(images) == 1:
        return imaging.encode_png(images[0])
    return imaging.encode_png(imaging.grid(images, cols=cols))


def _zip(out: generation.Samples, name: str, version: int) -> bytes:
    seeds: list[int | None] = [*out.seeds] if out.seeds else [None] * len(out.images)
    names = [f"{i:05d}{'' if s is None else f'-seed{s}'}.png" for i, s in enumerate(seeds)]
    manifest = {
        "model": name,
        "version": version,
        "images": [
            {"file": f, "seed": s, "label": None if out.labels is None else int(out.labels[i])}
            for i, (f, s) in enumerate(zip(names, seeds, strict=True))
        ],
    }
    return imaging.encode_zip(out.images, names, manifest)


def _items(out: generation.Samples) -> list[SampleItem]:
    """Each image as base64 PNG, with its latent when the request asked for latents."""
    z = out.latents
    return [
        SampleItem(
            seed=s,
            label=None if out.labels is None else int(out.labels[i]),
            png=base64.b64encode(imaging.encode_png(out.images[i])).decode(),
            latent=None if z is None else z[i].tolist(),
        )
        for i, s in enumerate(out.seeds or [None] * len(out.images))
    ]
