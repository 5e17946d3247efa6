"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import MetricsDep, PoolDep
from app.api.schemas import ERRORS
from core.errors import NotReady

router = APIRouter(tags=["health"], responses=ERRORS)


# HEAD too, as load balancers and uptime checks often probe (not in the document: one operation).
@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz")
@router.head("/readyz", include_in_schema=False)
async def readyz(pool: PoolDep) -> JSONResponse:
    """200 once every model in the repository has a serving version loaded: status "ready", or
    "degraded" when a serving version's files on disk no longer match its manifest (see each
    model's "integrity"). Otherwise 503, a problem whose "models" holds the same detail."""
    models = pool.readiness()
    unready = {name: m["error"] or "loading" for name, m in models.items() if not m["ready"]}
    if not models or unready:
        reasons = "; ".join(f"{name}: {why}" for name, why in unready.items())
        raise NotReady(f"not ready: {reasons or 'the model repository is empty'}", models=models)
    # Degraded stays 200: every request is still served, from the copy verified at load, and
    # replicas sharing the volume all see the same bad files, so a 503 would take them all out
    # of the load balancer at once for a fault no response shows. This body and the
    # gan_model_artifacts_ok gauge raise the alarm; a reload of those files is refused.
    degraded = any(m["integrity"] for m in models.values())
    return JSONResponse({"status": "degraded" if degraded else "ready", "models": models})


@router.get("/metrics", response_class=Response)
async def metrics(m: MetricsDep) -> Response:
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
