"""app.api.deps: the admin key that guards admin routes."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.helpers import problem
from tests.conftest import app_settings


def test_admin_routes_need_the_key(models_dir: Path) -> None:
    settings = app_settings(models_dir, api_key="s3cret")
    with TestClient(create_app(settings)) as c:
        url, body = "/v1/models/tiny-gan/aliases/canary", {"version": 1}
        problem(c.put(url, json=body), 401)
        problem(c.put(url, json=body, headers={"Authorization": "Bearer wrong"}), 401)
        ok = c.put(url, json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_admin_routes_declare_the_bearer_scheme(client: TestClient) -> None:
    """So that /docs shows the admin routes' padlock and an Authorize button."""
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["GAN_API_KEY"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin key",
    }
    operations = [
        (path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()
    ]
    secured = {(path, method) for path, method, op in operations if op.get("security")}
    assert ("/v1/models/{name}/aliases/{alias}", "put") in secured
    assert ("/v1/jobs", "post") in secured and ("/v1/datasets", "post") in secured
    assert ("/v1/sample", "post") not in secured and ("/v1/jobs", "get") not in secured
    assert all(
        op["security"] == [{"GAN_API_KEY": []}] for _, _, op in operations if op.get("security")
    )
