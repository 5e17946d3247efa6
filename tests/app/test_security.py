"""Security: the admin key, CORS, internal errors that reveal nothing, and body limits.

The key comparison itself is ``hmac.compare_digest`` (app/api/deps.py); a timing test on a
shared CI machine would be noise, so these tests pin the behaviour: every admin route refuses
a missing key, another scheme and a wrong key with 401 and ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import app_settings

PROBLEM = "application/problem+json"
KEY = "s3cret-key"


@pytest.fixture
def admin(models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings(models_dir, api_key=KEY))) as c:
        yield c


def _dataset() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, images=np.zeros((4, 28, 28), np.uint8), labels=np.array([0, 1, 0, 1]))
    return buf.getvalue()


# Each admin route with a request that succeeds (2xx) given the right key.
ADMIN: dict[str, tuple[str, str, dict[str, Any]]] = {
    "alias": ("PUT", "/v1/models/tiny-gan/aliases/canary", {"json": {"version": 1}}),
    "submit": ("POST", "/v1/jobs", {"json": {"model": "tiny-gan", "preset": "paper"}}),
    "cancel": ("DELETE", "/v1/jobs/{job}", {}),
    "dataset": ("POST", "/v1/datasets", {"files": {"file": ("d.npz", _dataset())}}),
}
WRONG = {
    "missing": {},
    "empty": {"Authorization": ""},
    "basic-scheme": {"Authorization": "Basic czNjcmV0LWtleQ=="},  # base64 of the key
    "token-scheme": {"Authorization": f"Token {KEY}"},
    "no-scheme": {"Authorization": KEY},
    "wrong-key": {"Authorization": "Bearer s3cret-kez"},
    "key-prefix": {"Authorization": f"Bearer {KEY[:-1]}"},
    "key-and-more": {"Authorization": f"Bearer {KEY}x"},
    "non-ascii": {"Authorization": "Bearer s3cret-k\xe9y".encode("latin-1")},
    "key-header": {"X-API-Key": KEY},
}


@pytest.mark.parametrize("route", ADMIN.keys())
def test_admin_routes_refuse_missing_wrong_scheme_and_wrong_keys(
    admin: TestClient, route: str
) -> None:
    method, path, kwargs = ADMIN[route]
    job = admin.post(
        "/v1/jobs",
        json={"model": "tiny-gan", "preset": "paper"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert job.status_code == 202, job.text
    path = path.format(job=job.json()["id"])
    for name, headers in WRONG.items():
        r = admin.request(method, path, headers=headers, **kwargs)
        assert r.status_code == 401, (name, r.text)
        assert r.headers["content-type"] == PROBLEM and r.headers["www-authenticate"] == "Bearer"
        assert KEY not in r.text
    # The key is what is checked, not the exact spelling of the scheme (RFC 9110: case-blind).
    for scheme in ("Bearer", "bearer"):
        ok = admin.request(method, path, headers={"Authorization": f"{scheme} {KEY}"}, **kwargs)
        assert ok.status_code in (200, 201, 202, 409), (scheme, ok.text)


def test_read_routes_need_no_key(admin: TestClient) -> None:
    for path in ("/v1/models", "/v1/models/tiny-gan", "/v1/jobs", "/v1/datasets", "/healthz"):
        assert admin.get(path).status_code == 200, path


def _preflight(client: TestClient) -> httpx.Response:
    """A browser's CORS preflight for a cross-origin JSON POST."""
    return client.options(
        "/v1/sample",
        headers={
            "Origin": "https://example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


def test_cors_is_off_by_default(models_dir: Path) -> None:
    with TestClient(create_app(app_settings(models_dir))) as c:
        simple = c.get("/v1/models", headers={"Origin": "https://example.org"})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers
        preflight = _preflight(c)
        assert "access-control-allow-origin" not in preflight.headers
        assert preflight.status_code == 405 and preflight.headers["content-type"] == PROBLEM


def test_cors_allows_a_configured_origin_only(models_dir: Path) -> None:
    settings = app_settings(models_dir, cors_origins=["https://example.org"])
    with TestClient(create_app(settings)) as c:
        ok = c.get("/v1/models", headers={"Origin": "https://example.org"})
        assert ok.headers["access-control-allow-origin"] == "https://example.org"
        other = c.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert other.status_code == 200  # CORS is the browser's check; the server just omits
        assert "access-control-allow-origin" not in other.headers
        preflight = _preflight(c)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://example.org"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        refused = c.options(
            "/v1/sample",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        assert refused.headers["content-type"] == PROBLEM
        assert "origin" in refused.json()["detail"]


def test_an_internal_error_is_a_problem_without_internals(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real fault, no mocks: the datasets folder of the data directory is a file."""
    data_dir = models_dir.parent / "data"
    data_dir.mkdir()
    (data_dir / "datasets").write_text("not a folder")
    settings = app_settings(models_dir)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        r = c.get("/v1/datasets")
        assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
        assert r.json() == {
            "type": "urn:gan-serve:problem:internal-error",
            "title": "internal error",
            "status": 500,
            "detail": "the server failed; the error was logged",
        }
        for leak in ("Traceback", "FileExistsError", "datasets", str(data_dir), ".py"):
            assert leak not in r.text
        assert c.get("/healthz").status_code == 200
    logged = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert logged and logged[0].exc_info is not None  # the operator gets the traceback


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/v1/sample", "application/json"),
        ("/v1/jobs", "application/json"),
        ("/v1/discriminate", "application/x-npy"),
        ("/v1/discriminate", "multipart/form-data; boundary=x"),
    ],
)
def test_a_body_over_the_limit_is_refused_before_parsing(
    models_dir: Path, path: str, ctype: str
) -> None:
    with TestClient(create_app(app_settings(models_dir, max_upload_bytes=4096))) as c:
        r = c.post(path, content=b"{" * 10_000, headers={"content-type": ctype})
        assert r.status_code == 413 and r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["detail"] == "the request body is over 4096 bytes"


def test_chunked_bodies_over_the_limit_are_refused_before_parsing(
    models_dir: Path, start_server: Callable[..., Any]
) -> None:
    """No Content-Length to check up front: the limit counts bytes as they arrive."""
    server = start_server(
        GAN_MODELS_DIR=str(models_dir),
        GAN_EMBEDDED_WORKER="false",
        GAN_MAX_UPLOAD_BYTES="4096",
        GAN_MAX_DATASET_BYTES="8192",
    )

    def chunks(prefix: bytes, total: int) -> Iterator[bytes]:
        yield prefix
        for _ in range(total // 1024):
            yield b"0" * 1024

    mp = b'--x\r\nContent-Disposition: form-data; name="file"; filename="d.zip"\r\n\r\n'
    cases = [
        ("/v1/sample", "application/json", b'{"model": "', 4096),
        ("/v1/discriminate?model=tiny-gan", "application/x-npy", b"\x93NUMPY", 4096),
        ("/v1/discriminate", "multipart/form-data; boundary=x", mp, 4096),
        ("/v1/datasets", "multipart/form-data; boundary=x", mp, 8192),
    ]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path, ctype, prefix, limit in cases:
            r = client.post(
                path, content=chunks(prefix, 64 * limit), headers={"content-type": ctype}
            )
            assert "content-length" not in r.request.headers
            assert r.status_code == 413 and r.headers["content-type"] == PROBLEM, (path, r.text)
            assert r.json()["detail"] == f"the request body is over {limit} bytes"
        assert client.get("/healthz").status_code == 200
        ok = client.post("/v1/sample", json={"model": "tiny-gan", "seed": 1})
        assert ok.status_code == 200
    assert server.proc.poll() is None


def test_a_zip_entry_count_is_checked_before_extraction(models_dir: Path) -> None:
    """Thousands of empty entries: refused on the directory alone, nothing written."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3000):
            zf.writestr(f"a/{i}.png", b"")
    settings = app_settings(models_dir, max_dataset_files=1000)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/datasets", files={"file": ("many.zip", buf.getvalue())})
        assert r.status_code == 413 and "3000 files" in r.json()["detail"], r.text
        assert not list((settings.data_dir / "datasets").iterdir())
