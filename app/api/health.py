"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import MetricsDep, PoolDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "some model is not loaded"}})
async def readyz(pool: PoolDep) -> JSONResponse:
    """200 once every model in the repository has a serving version loaded."""
    models = pool.readiness()
    ready = bool(models) and all(m["ready"] for m in models.values())
    body = {"status": "ready" if ready else "not ready", "models": models}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(m: MetricsDep) -> Response:
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
