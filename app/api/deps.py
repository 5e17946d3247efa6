"""Typed dependencies: what a handler may ask for, the admin check and the JSON check.

Each is ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in its
thread pool, and a thread hop per dependency per request costs more than the whole lookup.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.cache import ResponseCache
from app.jobs.service import JobService
from app.jobs.store import JobStore
from app.lanes import Lanes
from app.metrics import Metrics
from app.serving.pool import ModelPool
from app.serving.projection import Projector
from app.settings import Settings
from core import identifiers
from core.errors import Unauthorized, UnsupportedMediaType
from core.repository import Repository


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


async def get_cache(request: Request) -> ResponseCache:
    cache: ResponseCache = request.state.cache
    return cache


async def get_lanes(request: Request) -> Lanes:
    lanes: Lanes = request.state.lanes
    return lanes


async def get_projector(request: Request) -> Projector:
    projector: Projector = request.state.projector
    return projector


async def get_jobs(request: Request) -> JobService:
    jobs: JobService = request.state.jobs
    return jobs


async def get_job_store(request: Request) -> JobStore:
    jobs: JobService = request.state.jobs
    return jobs.queue.store


# Dependencies that only read the lifespan state, by the key they read (app/api/fast_route.py
# reads these keys itself on the hot route).
STATE: dict[Callable[..., Any], str] = {
    get_settings: "settings",
    get_pool: "pool",
    get_metrics: "metrics",
    get_repo: "repo",
    get_jobs: "jobs",
    get_lanes: "lanes",
    get_cache: "cache",
    get_projector: "projector",
}


async def get_job_id(job_id: str) -> str:
    """The ``{job_id}`` path parameter, checked before any path is made of it (404 otherwise)."""
    return identifiers.job_id(job_id)


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[ModelPool, Depends(get_pool)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RepoDep = Annotated[Repository, Depends(get_repo)]
LanesDep = Annotated[Lanes, Depends(get_lanes)]
CacheDep = Annotated[ResponseCache, Depends(get_cache)]
ProjectorDep = Annotated[Projector, Depends(get_projector)]
JobServiceDep = Annotated[JobService, Depends(get_jobs)]
JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
JobId = Annotated[str, Depends(get_job_id)]


# Declares the scheme in the OpenAPI document (the admin routes' padlock, /docs' Authorize
# button); auto_error=False leaves a missing key to require_admin's 401 problem.
_bearer = HTTPBearer(scheme_name="GAN_API_KEY", description="the admin key", auto_error=False)


async def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer GAN_API_KEY, compared in constant time; open when no key is set."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise Unauthorized("this route needs 'Authorization: Bearer <GAN_API_KEY>'")


async def require_json(request: Request) -> None:
    """A 415 for a body that is not declared JSON; FastAPI would read it as a string and
    answer with a validation error about the body's type instead."""
    mime = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not (mime == "application/json" or mime.startswith("application/") and mime[-5:] == "+json"):
        raise UnsupportedMediaType("send the body as JSON, with Content-Type: application/json")
