"""The Open Inference Protocol v2 over HTTP (KServe v2, Triton's HTTP/REST API) at /v2.

Health, server and model metadata, model configuration and inference, with the binary tensor
data extension and gzip/deflate bodies both ways. Errors are the protocol's ``{"error": "..."}``
with the status /v1 would answer (a request /v1 calls invalid, 422, is a 400 here). Versions
are the repository's: a number, an alias or ``latest``; without one, the serving version.
A version other than the serving one is loaded on its first request, as in /v1, so a model
is ready when its serving version is loaded, and so is each of its versions.

The routes stay out of the OpenAPI document: the protocol's own specification describes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from app.api.deps import MetricsDep, PoolDep, RepoDep, SettingsDep
from app.oip import compression, models, tensors
from app.oip.inference import infer
from app.serving.pool import ModelPool
from core.errors import ApiError, BadRequest, NotReady
from core.repository import Manifest, Repository

log = logging.getLogger(__name__)
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
HEADER_LENGTH = "Inference-Header-Content-Length"


class OipRoute(APIRoute):
    """A route whose errors are rendered as the protocol's ``{"error": "..."}``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as e:
                if e.status >= 500 and e.status != 503:  # as app.main logs /v1's
                    log.error("%s %s: %s", request.method, request.url.path, e.detail)
                return error(400 if e.status == 422 else e.status, e.detail, e.headers())
            except HTTPException as e:  # the middleware's body limits: 413, 408
                return error(e.status_code, str(e.detail), dict(e.headers or {}))
            except RequestValidationError as e:
                return error(400, str(e.errors()[0].get("msg", "invalid request")))

        return route


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


router = APIRouter(prefix="/v2", route_class=OipRoute, include_in_schema=False)


@router.get("")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": "gan-serve", "version": request.app.version, "extensions": EXTENSIONS}


# Health answers by status (Triton's clients read that) and by body (KServe's read
# {"live": true} and {"ready": true}); not ready is a 503, as KServe's own server answers.
@router.get("/health/live")
@router.head("/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
@router.head("/health/ready")
async def ready(pool: PoolDep) -> Response:
    """200 once every model has a serving version, 503 before."""
    states = pool.readiness()
    unready = [f"{name}: {s['error'] or 'loading'}" for name, s in states.items() if not s["ready"]]
    if not states or unready:
        why = "; ".join(unready) or "the model repository is empty"
        return JSONResponse({"ready": False, "error": f"not ready: {why}"}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def model_metadata(
    name: str, pool: PoolDep, repo: RepoDep, settings: SettingsDep, version: str | None = None
) -> dict[str, Any]:
    model = models.find(name, pool.names())
    manifest, versions = await _describe(pool, repo, model.base, version)
    return models.metadata(model, manifest, versions, settings)


@router.get("/models/{name}/config")
@router.get("/models/{name}/versions/{version}/config")
async def model_config(
    name: str, pool: PoolDep, repo: RepoDep, settings: SettingsDep, version: str | None = None
) -> dict[str, Any]:
    model = models.find(name, pool.names())
    manifest, _ = await _describe(pool, repo, model.base, version)
    return models.config(model, manifest, settings)


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(
    name: str, pool: PoolDep, repo: RepoDep, version: str | None = None
) -> Response:
    model = models.find(name, pool.names())
    serving = pool.serving(model.base)
    if serving is None:
        return error(400, f"{model.name} is not loaded yet")
    manifest = serving.manifest
    if version is not None:
        manifest, _ = await _describe(pool, repo, model.base, version)
    models.check_served(model, manifest)
    return Response()


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def model_infer(
    name: str,
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    version: str | None = None,
) -> Response:
    model = models.find(name, pool.names())
    body = await request.body()
    coding = request.headers.get("content-encoding")
    if coding is not None:  # a few kB can inflate to the limit: off the event loop
        body = await asyncio.to_thread(
            compression.decompress, body, coding, settings.max_upload_bytes
        )
    length = request.headers.get(HEADER_LENGTH)
    parsed = tensors.parse_request(body, length, settings.max_json_values)
    loaded = await pool.get(model.base, version)
    unknown = set(parsed.outputs or ()) - {
        o.name for o in models.outputs(model.kind, loaded.manifest)
    }
    if unknown:
        raise BadRequest(f"{model.name} has no output {sorted(unknown)[0][:80]!r}")
    outputs = await infer(model, loaded, parsed.inputs, settings, metrics)
    content, header_length = tensors.encode_response(model.name, loaded.version, parsed, outputs)
    headers = {"X-Model": loaded.name, "X-Model-Version": str(loaded.version)}
    if header_length is not None:
        headers[HEADER_LENGTH] = str(header_length)
    media = "application/json" if header_length is None else "application/octet-stream"
    answer = compression.accepted(request.headers.get("accept-encoding", ""))
    if answer is not None:
        content = await asyncio.to_thread(compression.compress, content, answer)
        headers["Content-Encoding"] = answer
        headers["Vary"] = "Accept-Encoding"
    return Response(content, media_type=media, headers=headers)


@router.api_route("/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE"])
async def unknown(rest: str, request: Request) -> Response:
    """Any other path under /v2: the protocol's error body rather than a problem document."""
    return error(404, f"no {request.method} /v2/{rest[:80]} here (extensions: {EXTENSIONS})")


async def _describe(
    pool: ModelPool, repo: Repository, name: str, version: str | None
) -> tuple[Manifest, list[int]]:
    """The manifest of the version named (default: the serving one), and every version."""
    serving = pool.serving(name)
    if version is None and serving is None:
        raise NotReady(f"{name} is not loaded yet")

    def read() -> tuple[Manifest, list[int]]:
        listing = repo.listing(name)
        if version is None:
            assert serving is not None
            return serving.manifest, list(listing.versions)
        return repo.manifest(name, listing.resolve(version)), list(listing.versions)

    return await asyncio.to_thread(read)
