"""app.serving.pool: which model a request without one gets."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import app_settings


def test_default_model_setting(models_dir: Path) -> None:
    settings = app_settings(models_dir, default_model="tiny-cgan")
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/sample", json={}).headers["x-model"] == "tiny-cgan"
    with TestClient(create_app(app_settings(models_dir))) as c:
        assert c.post("/v1/sample", json={}).headers["x-model"] == "tiny-cgan"  # first by name
