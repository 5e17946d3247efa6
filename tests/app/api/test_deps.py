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
