"""The app factory: ``uvicorn --factory app.main:create_app``.

Settings are read here, once, never at import time. The lifespan owns every resource
(repository, model pool and its poller, job queue, embedded consumer, reaper) and closes them
in reverse order.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypedDict

import pydantic_core
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from app import docs, logs
from app.api import (
    datasets,
    discriminate,
    health,
    interpolate,
    jobs,
    models,
    project,
    sample,
)
from app.api.schemas import ERRORS, PROBLEM
from app.cache import ResponseCache
from app.jobs.queue import JobQueue
from app.jobs.service import JobService
from app.lanes import Lanes
from app.metrics import JobsCollector, Metrics
from app.middleware import ProblemCORSMiddleware, RequestContext
from app.oip import router as oip
from app.serving.pool import ModelPool
from app.serving.projection import Projector
from app.settings import Settings
from core.errors import ApiError
from core.repository import Repository

log = logging.getLogger("app")
STATIC = Path(__file__).with_name("static")
# The playground at / is same-origin static files calling the API: a strict policy costs it
# nothing, and no-cache makes browsers revalidate (304) so an upgrade never runs stale scripts.
PLAYGROUND_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class State(TypedDict):
    settings: Settings
    metrics: Metrics
    repo: Repository
    pool: ModelPool
    jobs: JobService
    lanes: Lanes
    cache: ResponseCache
    projector: Projector


async def _reap_forever(queue: JobQueue, every_s: float = 5.0) -> None:
    """Find jobs whose worker died (here or on another machine) and requeue them."""
    while True:
        try:
            await asyncio.to_thread(queue.reap)
        except Exception:
            log.exception("job reaper failed")
        await asyncio.sleep(every_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        logs.configure(settings.log_level)
        repo = settings.repository()
        pool = ModelPool(repo, settings, metrics)
        lanes = Lanes.from_settings(settings)
        await pool.start()
        queue = JobQueue(settings)
        metrics.registry.register(JobsCollector(queue.store))
        embedded = settings.queue_url is None and settings.embedded_worker
        if embedded:
            await asyncio.to_thread(queue.start_embedded)
        reaper = asyncio.create_task(_reap_forever(queue), name="job-reaper")
        if settings.api_key is None:
            log.warning("GAN_API_KEY is not set: admin routes are open; bind to loopback only")
        log.info(
            "serving %s from %s (published: %s)",
            ", ".join(pool.names()) or "nothing",
            settings.models_dir,
            settings.published_models,
        )
        if not pool.names():  # e.g. started outside the repository: say so, and what to set
            log.warning(
                "no models to serve: %s holds none; set GAN_MODELS_DIR to a model repository "
                "(the checkout's models/ folder)",
                settings.models_dir.resolve(),
            )
        # What startup built (models, routes, schemas) lives as long as the app: frozen, the
        # cyclic collector stops walking it on every full collection, which took about 37 ms
        # of the event loop each time with the committed models loaded (README, Benchmarks).
        gc.collect()
        gc.freeze()
        # A batch thread needs the GIL back after each engine call. While the event loop is
        # busy, Python's 5 ms interval starts over each time the loop lets the GIL go and takes
        # it straight back, so the thread waited for the loop to run dry: loop and engine took
        # turns. A short interval lets them overlap (README, Benchmarks).
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(settings.gil_switch_interval_us / 1e6)
        try:
            yield {
                "settings": settings,
                "metrics": metrics,
                "repo": repo,
                "pool": pool,
                "jobs": JobService(queue, repo, settings),
                "lanes": lanes,
                "cache": ResponseCache(settings.response_cache_bytes, metrics),
                "projector": Projector(settings),
            }
        finally:
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
            if embedded:  # running jobs checkpoint and go back on the queue
                await asyncio.to_thread(queue.stop_embedded)
            await pool.close()
            lanes.close()
            sys.setswitchinterval(switch_interval)
            gc.unfreeze()

    app = FastAPI(
        title="gan-serve",
        version="0.1.0",
        summary="GAN generators and discriminators over HTTP",
        lifespan=lifespan,
        responses=ERRORS,
        docs_url=None,  # app/docs.py: the pages with their assets served from here
        redoc_url=None,
    )
    # Flat, not include_router: since FastAPI 0.137 an included router stays a node that every
    # request is routed through again, about a fifth of a small /v1/sample's time (README).
    for module in (
        sample,
        discriminate,
        project,
        interpolate,
        models,
        jobs,
        datasets,
        health,
        oip,
    ):
        app.router.routes.extend(module.router.routes)
    docs.install(app)
    _mount_playground(app)
    _install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            # What a browser client needs to read: the version served and how to reproduce it.
            expose_headers=["X-Model", "X-Model-Version", "X-Seed", "X-Labels", "X-Request-ID"],
        )
    app.add_middleware(
        RequestContext,
        metrics=metrics,
        max_body=settings.max_upload_bytes,
        max_body_by_path={"/v1/datasets": settings.max_dataset_bytes},
        body_timeout_s=settings.body_timeout_s,
        max_json_values=settings.max_json_values,
    )
    return app


class _PlaygroundFiles(StaticFiles):
    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(PLAYGROUND_HEADERS)
        return response


def _mount_playground(app: FastAPI) -> None:
    """The web playground (app/static): outside the OpenAPI schema, it is no API."""
    app.mount("/static", _PlaygroundFiles(directory=STATIC), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PLAYGROUND_HEADERS)


def problem(status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    body = {
        "type": "urn:gan-serve:problem:" + title.replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        **{k: v for k, v in extra.items() if v is not None},
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        # 503s (overloaded, not ready yet) are expected states, counted in metrics and the
        # access log; a readiness probe would otherwise log an error every few seconds.
        if exc.status >= 500 and exc.status != 503:
            log.error("%s %s: %s", request.method, request.url.path, exc.detail)
        response = problem(exc.status, exc.title, exc.detail, field=exc.field, **exc.extensions)
        response.headers.update(exc.headers())
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        kind, where = (errors[0]["type"], tuple(errors[0]["loc"])) if errors else ("", ())
        if kind == "json_invalid" or (kind, where) == ("missing", ("body",)):
            return _invalid_json(exc.body)  # the body as a whole, not one of its fields
        return _validation_problem(errors)

    @app.exception_handler(ValidationError)
    async def invalid_value(request: Request, exc: ValidationError) -> JSONResponse:
        return _validation_problem(exc.errors())

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, RecursionError | UnicodeDecodeError):
            return _invalid_json(exc.__cause__)  # FastAPI's "error parsing the body"
        titles = {404: "not found", 405: "method not allowed", 413: "limit exceeded"}
        title = titles.get(exc.status_code, "bad request" if exc.status_code < 500 else "error")
        response = problem(exc.status_code, title, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback here; the client gets no internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal error", "the server failed; the error was logged")


def _invalid_json(cause: object) -> JSONResponse:
    """What is wrong with a body that is not a JSON document, said as a parser says it.

    FastAPI parses with the standard library and reports only that parsing failed; the body's
    own text, parsed again by pydantic-core (on this error path only), names where and why:
    an early end, bad UTF-8, nesting past the recursion limit.
    """
    if isinstance(cause, RecursionError):
        why = "nested too deeply (recursion limit exceeded)"
    elif isinstance(cause, UnicodeDecodeError):
        why = f"invalid unicode: the body is not UTF-8 ({cause.reason} at byte {cause.start})"
    elif cause is None or cause == b"" or cause == "":
        why = "the body is empty; send a JSON object"
    else:
        try:
            pydantic_core.from_json(cause if isinstance(cause, str | bytes) else str(cause))
            why = "unreadable"
        except ValueError as e:
            why = str(e)
    return problem(422, "validation error", f"Invalid JSON: {why}")


def _validation_problem(errors: object) -> JSONResponse:
    items = list(errors) if isinstance(errors, list | tuple) else []
    fields = []
    for err in items:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        fields.append({"field": ".".join(loc) or None, "message": err.get("msg", "invalid")})
    first = fields[0] if fields else {"field": None, "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
    return problem(422, "validation error", detail, field=first["field"], errors=fields)
