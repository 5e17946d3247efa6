"""RequestRoute: request-only endpoints skip FastAPI's parameter solving, and lose nothing."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.testclient import TestClient

from app.api.routing import RequestRoute
from app.main import create_app

from ..conftest import app_settings


async def raw(request: Request) -> Response:
    """Echo the body."""
    return Response(await request.body(), media_type="text/plain")


async def with_query(request: Request, n: int = Query(ge=1)) -> Response:
    return Response(str(n * 2), media_type="text/plain")


def _app() -> FastAPI:
    router = APIRouter(route_class=RequestRoute)
    router.add_api_route("/raw", raw, methods=["POST"], response_class=Response)
    router.add_api_route("/query", with_query, methods=["GET"], response_class=Response)
    app = FastAPI()
    app.router.routes.extend(router.routes)  # flat, as app.main adds its routers
    return app


def test_request_only_endpoints_are_called_directly_others_as_fastapi_does() -> None:
    app = _app()
    routes = {r.path: r for r in app.routes if isinstance(r, RequestRoute)}
    assert routes["/raw"].get_route_handler() is raw
    assert routes["/query"].get_route_handler() is not with_query
    with TestClient(app) as client:
        assert client.post("/raw", content=b"abc").text == "abc"
        assert client.get("/query", params={"n": 4}).text == "8"
        assert client.get("/query", params={"n": 0}).status_code == 422  # still validated
        doc = client.get("/openapi.json").json()
    assert doc["paths"]["/raw"]["post"]["description"] == "Echo the body."
    assert [p["name"] for p in doc["paths"]["/query"]["get"]["parameters"]] == ["n"]


def test_the_sample_route_is_a_request_route_and_stays_documented(models_dir: Path) -> None:
    with TestClient(create_app(app_settings(models_dir))) as client:
        route = next(r for r in client.app.routes if getattr(r, "path", "") == "/v1/sample")  # type: ignore[attr-defined]
        assert isinstance(route, RequestRoute)
        body = client.get("/openapi.json").json()["paths"]["/v1/sample"]["post"]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/SampleRequest"}


def test_startup_objects_are_frozen_while_serving_and_thawed_after(models_dir: Path) -> None:
    gc.unfreeze()
    with TestClient(create_app(app_settings(models_dir))):
        assert gc.get_freeze_count() > 0  # the loaded models and app, out of every collection
    assert gc.get_freeze_count() == 0  # a stopped app can be collected like anything else


def test_the_gil_switch_interval_is_short_while_serving_and_restored_after(
    models_dir: Path,
) -> None:
    before = sys.getswitchinterval()
    with TestClient(create_app(app_settings(models_dir, gil_switch_interval_us=250))):
        assert sys.getswitchinterval() == pytest.approx(250e-6)
    assert sys.getswitchinterval() == before  # a stopped app leaves the process as it was
