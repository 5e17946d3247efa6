"""FastJsonRoute: which routes take the fast handler, and that they answer as FastAPI's would."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.api.deps import PoolDep, SettingsDep, require_admin, require_json
from app.api.fast_route import FastJsonRoute
from app.main import create_app
from app.settings import Settings
from tests.conftest import app_settings


class Body(BaseModel):
    n: int


def _router() -> APIRouter:
    router = APIRouter(route_class=FastJsonRoute)

    @router.post("/fast", dependencies=[Depends(require_json)])
    async def fast(body: Body, settings: SettingsDep, pool: PoolDep) -> Response:
        return Response(f"{body.n} {settings.max_n} {type(pool).__name__}")

    @router.post("/with-request")
    async def with_request(request: Request, body: Body) -> Response:
        return Response(f"{body.n} {request.headers['x-probe']}")

    @router.post("/query")
    async def with_query(body: Body, q: Annotated[int, Query()] = 0) -> Response:
        return Response(str(body.n + q))

    @router.post("/admin", dependencies=[Depends(require_admin)])
    async def admin(body: Body) -> Response:
        return Response(str(body.n))

    return router


def _handler_is_fast(router: APIRouter, path: str) -> bool:
    route = next(r for r in router.routes if getattr(r, "path", None) == path)
    return getattr(route.get_route_handler(), "__qualname__", "").startswith("FastJsonRoute")


def test_only_routes_of_a_body_and_state_dependencies_take_the_fast_handler() -> None:
    router = _router()
    assert _handler_is_fast(router, "/fast")
    assert _handler_is_fast(router, "/with-request")  # the request itself, for its headers
    assert not _handler_is_fast(router, "/query")  # query parameters: FastAPI's handler
    assert not _handler_is_fast(router, "/admin")  # a dependency that is not a state read


def test_the_fast_handler_reads_the_body_and_the_lifespan_state(models_dir) -> None:  # type: ignore[no-untyped-def]
    app = create_app(app_settings(models_dir, max_n=77))
    app.router.routes.extend(_router().routes)
    with TestClient(app) as client:
        r = client.post("/fast", json={"n": 5})
        assert r.status_code == 200 and r.text == "5 77 ModelPool"
        assert client.post("/query?q=2", json={"n": 5}).text == "7"
        assert client.post("/with-request", json={"n": 5}, headers={"x-probe": "p"}).text == "5 p"
        bad = client.post("/fast", json={"n": "five"})
        assert bad.status_code == 422 and bad.json()["field"] == "n"
        wrong_type = client.post(
            "/fast", content=b'{"n": 5}', headers={"content-type": "text/plain"}
        )
        assert wrong_type.status_code == 415


def test_openapi_documents_the_fast_route_as_any_other() -> None:
    doc = create_app(Settings()).openapi()
    body = doc["paths"]["/v1/sample"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SampleRequest"
    }
    assert "n" in doc["components"]["schemas"]["SampleRequest"]["properties"]
