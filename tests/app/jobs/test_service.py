"""app.jobs.service: job requests validated before anything is queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import app_settings


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"overrides": {"max_stepz": 5}}, 422, "overrides.max_stepz"),
        ({"overrides": {"max_steps": -5}}, 422, "overrides.max_steps"),
        ({"overrides": {"max_steps": 10**9}}, 422, "overrides.max_steps"),
        ({"overrides": {"network.width": 10**6}}, 422, "overrides.network.width"),
        ({"preset": "nope"}, 422, "preset"),
        ({"dataset": "abc123"}, 422, "dataset"),
        ({"base_version": 9}, 422, "base_version"),
        ({"model": "../x"}, 422, "model"),
        ({"promote": "sometimes"}, 422, "promote"),
        ({"promote_on": ["fid", "beauty"]}, 422, "promote_on.1"),
        ({"promote_on": []}, 422, "promote_on"),
        ({"promote_on": "fid"}, 422, "promote_on"),
    ],
)
def test_bad_job_requests_are_refused_before_queueing(
    models_dir: Path, tmp_path: Path, body: dict, status: int, field: str
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = app_settings(models_dir, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/jobs", json={"model": "tiny-cgan", **body})
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["field"] == field
        assert c.get("/v1/jobs").json()["total"] == 0
