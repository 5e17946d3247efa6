"""Typed dependencies: what a handler may ask for, and the admin check.

Each is ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in its
thread pool, and a thread hop per dependency per request costs more than the whole lookup.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel

from app.errors import Unauthorized, UnsupportedMediaType
from app.metrics import Metrics
from app.pool import ModelPool
from app.registry import Repository
from app.settings import Settings

B = TypeVar("B", bound=BaseModel)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def get_pool(request: Request) -> ModelPool:
    pool: ModelPool = request.state.pool
    return pool


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.state.metrics
    return metrics


async def get_repo(request: Request) -> Repository:
    repo: Repository = request.state.repo
    return repo


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[ModelPool, Depends(get_pool)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RepoDep = Annotated[Repository, Depends(get_repo)]


async def require_admin(request: Request, settings: SettingsDep) -> None:
    """Bearer GAN_API_KEY, compared in constant time; open when no key is set."""
    if settings.api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = settings.api_key.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected):
        raise Unauthorized("this route needs 'Authorization: Bearer <GAN_API_KEY>'")


async def json_body(request: Request, model: type[B]) -> B:
    """The request's JSON body as ``model``, parsed and validated by pydantic-core in one pass.

    Every JSON body is read this way. On the hot route (POST /v1/sample), FastAPI's body
    parameter and dependencies cost about a tenth of its event-loop time (README, Benchmarks);
    and pydantic-core's parser names what is wrong with malformed JSON (position, recursion
    limit, bad UTF-8) where FastAPI's says only that parsing failed. A ValidationError becomes
    the app's 422 problem like any other.
    """
    mime = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not (mime == "application/json" or mime.startswith("application/") and mime[-5:] == "+json"):
        raise UnsupportedMediaType("send the body as JSON, with Content-Type: application/json")
    return model.model_validate_json(await request.body())


def json_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body read with ``json_body``.

    The schema itself goes into the document's components (``app.main``), so the model keeps its
    name there as it would have as a FastAPI body parameter.
    """
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}
