"""app.oip.router over HTTP (the real app, in process): every bad request is a clear 4xx with the
protocol's {"error": ...} body, never a 500; limits, compression, metrics and the routes' place."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import app_settings

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
SEEDED = "/v2/models/tiny-cgan.seeded/infer"


@pytest.fixture
def app(models_dir: Path) -> Iterator[TestClient]:
    settings = app_settings(models_dir, max_n=4, max_files=3, max_upload_bytes=64 * 1024)
    with TestClient(create_app(settings)) as c:
        yield c


def binary(inputs: dict[str, np.ndarray], **extra: Any) -> tuple[bytes, dict[str, str]]:
    """A request in the binary tensor data extension, as tritonclient sends one."""
    tensors = [
        {
            "name": name,
            "shape": list(a.shape),
            "datatype": DATATYPES[a.dtype],
            "parameters": {"binary_data_size": a.nbytes},
        }
        for name, a in inputs.items()
    ]
    header = json.dumps({"inputs": tensors, **extra}).encode()
    blobs = b"".join(a.tobytes() for a in inputs.values())
    return header + blobs, {"Inference-Header-Content-Length": str(len(header))}


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message: str = response.json()["error"]
    assert message
    return message


def test_json_and_binary_requests_give_the_same_answer(app: TestClient) -> None:
    seeds = np.array([3, 4], dtype=np.int64)
    nested = {"inputs": [{"name": "seed", "shape": [2], "datatype": "INT64", "data": [3, 4]}]}
    answer = app.post(SEEDED, json={**nested, "id": "x"}, headers={"accept-encoding": "identity"})
    assert answer.headers["content-type"] == "application/json"
    out = answer.json()
    assert out["id"] == "x" and out["model_name"] == "tiny-cgan.seeded"
    body, headers = binary({"seed": seeds}, parameters={"binary_data_output": True})
    raw = app.post(SEEDED, content=body, headers={**headers, "accept-encoding": "identity"})
    length = int(raw.headers["inference-header-content-length"])
    header = json.loads(raw.content[:length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 2 * 28 * 28
    images = np.frombuffer(raw.content[length:], dtype=np.uint8)
    np.testing.assert_array_equal(images, out["outputs"][0]["data"])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([{"name": "seed", "shape": [2], "datatype": "INT64", "data": [1.5, 2]}], "numbers"),
        ([{"name": "seed", "shape": [2], "datatype": "INT64", "data": ["1", "2"]}], "numbers"),
        ([{"name": "seed", "shape": [3], "datatype": "INT64", "data": [1, 2]}], "holds 3 values"),
        ([{"name": "seed", "shape": [2], "datatype": "INT64", "data": [[1], [2, 3]]}], "list"),
        ([{"name": "seed", "shape": [1], "datatype": "INT64", "data": [2**63]}], "range"),
        ([{"name": "seed", "shape": [1], "datatype": "BYTES", "data": ["a"]}], "not one of"),
        ([{"name": "seed", "shape": [1], "datatype": "INT32", "data": [1]}], "must be INT64"),
        ([{"name": "seed", "shape": [1, 1], "datatype": "INT64", "data": [1]}], "shape [-1]"),
        ([{"name": "seed", "shape": [-1], "datatype": "INT64", "data": [1]}], "negative"),
        ([{"name": "seed", "shape": [1], "datatype": "INT64"}], "neither data"),
        ([{"name": "seed", "shape": [0], "datatype": "INT64", "data": []}], "empty"),
        ([{"name": "z", "shape": [1], "datatype": "INT64", "data": [1]}], "no input 'z'"),
        ([{"name": "label", "shape": [1], "datatype": "INT64", "data": [1]}], "needs input"),
        (
            [
                {"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "label", "shape": [1], "datatype": "INT64", "data": [10]},
            ],
            "0..9",
        ),
        (
            [
                {"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "truncation", "shape": [1], "datatype": "FP32", "data": [0.001]},
            ],
            "at least",
        ),
        (
            [
                {"name": "seed", "shape": [2], "datatype": "INT64", "data": [1, 2]},
                {"name": "label", "shape": [1], "datatype": "INT64", "data": [1]},
            ],
            "rows",
        ),
        (
            [
                {"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]},
            ],
            "twice",
        ),
    ],
)
def test_bad_json_tensors_are_400(app: TestClient, inputs: list[Any], message: str) -> None:
    assert message in error(app.post(SEEDED, json={"inputs": inputs}), 400)


def test_nan_and_bad_outputs_are_400(app: TestClient) -> None:
    nan = b'{"inputs": [{"name": "z", "shape": [1, 8], "datatype": "FP32", "data": '
    nan += b"[NaN, 0, 0, 0, 0, 0, 0, 0]}]}"
    assert "NaN" in error(app.post("/v2/models/tiny-gan/infer", content=nan), 400)
    z = np.zeros((1, 8), dtype=np.float32)
    z[0, 3] = np.inf
    body, headers = binary({"z": z})
    assert "infinity" in error(
        app.post("/v2/models/tiny-gan/infer", content=body, headers=headers), 400
    )
    seed = {"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]}]}
    for outputs, message in (
        ([{"name": "logit"}], "no output 'logit'"),
        ([{"name": "image", "parameters": {"classification": 3}}], "classification"),
        ([{"name": "image", "parameters": {"binary_data": "yes"}}], "true or false"),
    ):
        assert message in error(app.post(SEEDED, json={**seed, "outputs": outputs}), 400)


def test_header_lengths_that_lie_are_400(app: TestClient) -> None:
    body, headers = binary({"seed": np.array([1, 2], dtype=np.int64)})
    length = int(headers["Inference-Header-Content-Length"])
    for claimed, message in (
        (len(body) + 1, "not a length within"),
        (-1, "not a length"),
        (length - 1, "JSON"),
    ):
        lie = {"Inference-Header-Content-Length": str(claimed)}
        assert message in error(app.post(SEEDED, content=body, headers=lie), 400)
    assert "bytes follow" in error(app.post(SEEDED, content=body + b"x", headers=headers), 400)
    assert "ends past" in error(app.post(SEEDED, content=body[:-1], headers=headers), 400)
    plain = json.loads(body[:length])
    assert "Inference-Header-Content-Length" in error(app.post(SEEDED, json=plain), 400)
    plain["inputs"][0]["parameters"]["binary_data_size"] = 15
    header = json.dumps(plain).encode()
    short = {"Inference-Header-Content-Length": str(len(header))}
    assert "is 16 bytes" in error(
        app.post(SEEDED, content=header + body[length:], headers=short), 400
    )


def test_bodies_that_are_not_requests_are_400(app: TestClient) -> None:
    for body in (b"", b"not json", b"[1, 2]", b"{}", b"[" * 5000 + b"]" * 5000, b"\xff\xfe"):
        error(app.post(SEEDED, content=body), 400)


def test_over_limit_batches_are_413(app: TestClient) -> None:
    seeds = {"inputs": [{"name": "seed", "shape": [5], "datatype": "INT64", "data": [0] * 5}]}
    assert "limit of 4" in error(app.post(SEEDED, json=seeds), 413)
    images = np.zeros((4, 1, 28, 28), dtype=np.float32)
    body, headers = binary({"image": images})
    url = "/v2/models/tiny-gan.discriminator/infer"
    assert "limit of 3" in error(app.post(url, content=body, headers=headers), 413)


def test_compressed_bodies_are_bounded_while_they_inflate(app: TestClient) -> None:
    seeds = {"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [9]}]}
    plain = json.dumps(seeds).encode()
    expected = app.post(SEEDED, content=plain).json()
    for coding, packed in (("gzip", gzip.compress(plain)), ("deflate", zlib.compress(plain))):
        answer = app.post(SEEDED, content=packed, headers={"content-encoding": coding})
        assert answer.json() == expected
    bomb = gzip.compress(plain[:-1] + b" " * (10 * 1024 * 1024) + b"}")  # 10 MB in 10 kB
    assert len(bomb) < 64 * 1024
    message = error(app.post(SEEDED, content=bomb, headers={"content-encoding": "gzip"}), 413)
    assert "inflates to over 65536 bytes" in message
    for coding, body, status in (
        ("gzip", gzip.compress(plain)[:-9], 400),
        ("gzip", gzip.compress(plain) + b"more", 400),
        ("deflate", b"not zlib", 400),
        ("br", plain, 415),
    ):
        error(app.post(SEEDED, content=body, headers={"content-encoding": coding}), status)


def test_responses_are_compressed_when_asked(app: TestClient) -> None:
    seeds = {"inputs": [{"name": "seed", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]}]}
    plain = app.post(SEEDED, json=seeds, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    for coding in ("gzip", "deflate"):
        packed = app.post(SEEDED, json=seeds, headers={"accept-encoding": f"br;q=1, {coding}"})
        assert packed.headers["content-encoding"] == coding
        assert packed.json() == plain.json()  # httpx inflates it
        assert int(packed.headers["content-length"]) < len(plain.content)


def test_unknown_models_versions_and_paths_are_404(app: TestClient) -> None:
    assert "no model named" in error(app.get("/v2/models/tiny-gan.generator"), 404)
    assert "no version 9" in error(app.get("/v2/models/tiny-gan/versions/9"), 404)
    seeds = {"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]}]}
    url = "/v2/models/tiny-gan.seeded/versions/9/infer"
    assert "no version 9" in error(app.post(url, json=seeds), 404)
    assert "no alias" in error(app.get("/v2/models/tiny-gan/versions/canary/ready"), 404)
    assert "extensions" in error(app.post("/v2/repository/index"), 404)
    assert "extensions" in error(app.get("/v2/models/tiny-gan/stats"), 404)


def test_health_heads_metrics_and_the_openapi_document(app: TestClient) -> None:
    assert app.head("/v2/health/live").status_code == 200
    assert app.head("/v2/health/ready").status_code == 200
    assert app.get("/v2/health/live").json() == {"live": True}  # KServe's client reads these
    assert app.get("/v2/health/ready").json() == {"ready": True}
    seeds = {"inputs": [{"name": "seed", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]}]}
    assert app.post(SEEDED, json=seeds).status_code == 200
    metrics = app.get("/metrics").text
    assert 'gan_images_generated_total{model="tiny-cgan",version="1"} 3.0' in metrics
    assert 'route="/v2/models/{name}/infer",status="200"' in metrics
    paths = app.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/v2")]


def test_a_server_with_nothing_to_serve_is_not_ready(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with TestClient(create_app(app_settings(tmp_path / "empty"))) as c:
        r = c.get("/v2/health/ready")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert "empty" in r.json()["error"]
        assert c.get("/v2/health/live").json() == {"live": True}
