"""app.middleware: the body-size limit, request ids and access logs."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.helpers import npy, problem
from tests.conftest import app_settings


def test_body_over_the_limit_is_refused_before_parsing(models_dir: Path) -> None:
    settings = app_settings(models_dir, max_upload_bytes=2048)
    with TestClient(create_app(settings)) as c:
        body = problem(
            c.post(
                "/v1/discriminate",
                content=b"x" * 5000,
                headers={"content-type": "application/x-npy"},
            ),
            413,
        )
        assert "2048" in body["detail"]


def test_request_id_is_echoed(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(len(i) == 32 and int(i, 16) >= 0 for i in made)


def test_access_log_names_the_model_version_and_count(models_dir: Path) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("app.access")
    logger.addHandler(handler)
    try:
        with TestClient(create_app(app_settings(models_dir, log_level="info"))) as client:
            body = {"model": "tiny-gan", "seed": 3, "n": 2, "format": "npy"}
            npy(client.post("/v1/sample", json=body, headers={"X-Request-ID": "req-7"}))
            client.get("/v1/models/" + "x" * 5000)  # a path a client made long
    finally:
        logger.removeHandler(handler)
    (fields,) = [r.fields for r in records if r.fields["route"] == "/v1/sample"]  # type: ignore[attr-defined]
    assert fields["status"] == 200 and fields["request_id"] == "req-7"
    assert (fields["model"], fields["version"], fields["n"]) == ("tiny-gan", "1", "2")
    (long,) = [r for r in records if r.fields["path"].startswith("/v1/models/x")]  # type: ignore[attr-defined]
    assert len(long.fields["path"]) == 256 and len(long.getMessage()) < 300  # type: ignore[attr-defined]
