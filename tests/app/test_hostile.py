"""Hostile inputs through the real app: each gets a clear 4xx problem, and the service stays up.

Every test ends by checking that /healthz answers and that an ordinary /v1/sample still draws
an image, so a refusal that leaves the service broken (a wedged batcher, a half-written
repository) fails here too. Inputs already covered end to end elsewhere are not repeated:
plain text named .png (test_main), ``..``/absolute/symlink names and a deflate bomb in a dataset
zip (jobs/test_datasets), max_steps and network.width in a job (jobs/test_service).
"""

from __future__ import annotations

import base64
import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from core import imaging
from tests.conftest import app_settings

PROBLEM = "application/problem+json"


@pytest.fixture
def settings(models_dir: Path) -> Settings:
    return app_settings(models_dir)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c
        healthy(c)


def healthy(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.post("/v1/sample", json={"model": "tiny-cgan", "seed": 1, "n": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text


def problem(response: Any, status: int, *words: str) -> dict[str, Any]:
    """A problem+json refusal with this status whose detail names each of ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"], body
    for word in words:
        assert word in body["detail"], body
    assert "Traceback" not in response.text
    return body


# --- images -------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def blank_png(width: int, height: int, *, with_pixels: bool = True) -> bytes:
    """A valid all-black grayscale PNG of any size, streamed so it costs kilobytes to build.

    Zeros compress about 1000:1: an 8000x8000 one is 62 kB that decodes to 64 MB.
    Without pixels it is only the header, which is all a decoder needs to learn the size.
    """
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    idat = b""
    if with_pixels:
        z = zlib.compressobj(9)
        row = bytes(width + 1)  # a filter byte, then the row
        idat = _png_chunk(b"IDAT", b"".join(z.compress(row) for _ in range(height)) + z.flush())
    return b"\x89PNG\r\n\x1a\n" + header + idat + _png_chunk(b"IEND", b"")


def encode(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format=fmt)
    return buf.getvalue()


def digit(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)


def upload(client: TestClient, data: bytes, name: str = "x.png", **form: str) -> Any:
    files = [("images", (name, data, "application/octet-stream"))]
    return client.post("/v1/discriminate", data={"model": "tiny-gan", **form}, files=files)


def test_a_decompression_bomb_png_is_refused_before_decoding(client: TestClient) -> None:
    bomb = blank_png(8000, 8000)
    assert len(bomb) < 100_000  # ... that would decode to 64 MB
    problem(upload(client, bomb), 413, "8000x8000", "limit")


def test_a_10000_by_10000_image_is_refused(client: TestClient) -> None:
    big = base64.b64encode(blank_png(10_000, 10_000)).decode()
    r = client.post("/v1/discriminate", json={"model": "tiny-gan", "images": [big]})
    problem(r, 413, "image 0", "100000000 pixels")


def test_a_truncated_jpeg_is_invalid(client: TestClient) -> None:
    jpeg = encode(digit(), "JPEG")
    problem(upload(client, jpeg[: len(jpeg) // 2], "x.jpg"), 422, "JPEG", "truncated")


def test_a_one_pixel_image_needs_resize(client: TestClient) -> None:
    dot = encode(np.full((1, 1), 255, np.uint8), "PNG")
    problem(upload(client, dot), 422, "1x1", "28x28", "resize=true")
    ok = upload(client, dot, resize="true")
    assert ok.status_code == 200 and len(ok.json()["results"]) == 1


def test_an_alpha_channel_is_composited_onto_black(client: TestClient) -> None:
    """Documented (README): alpha is accepted, not refused; transparent pixels become black."""
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:14, :, 3] = 255  # the top half opaque white, the bottom half transparent white
    seen = upload(client, encode(rgba, "PNG", "RGBA"))
    flat = np.zeros((28, 28), np.uint8)
    flat[:14] = 255
    expected = upload(client, encode(flat, "PNG"))
    assert seen.status_code == 200 and seen.json() == expected.json()


def test_a_gif_is_an_unsupported_format(client: TestClient) -> None:
    problem(upload(client, encode(digit(), "GIF"), "x.gif"), 415, "PNG, JPEG or WebP")


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"\x89PNG\r\n\x1a\nI am text wearing a PNG signature", 422, ("PNG", "corrupt")),
        (b"\xff\xd8\xff<html>not a photo</html>", 422, ("JPEG", "corrupt")),
        (b"GIF89a but only text follows", 415, ("PNG, JPEG or WebP",)),
    ],
    ids=["png-magic", "jpeg-magic", "gif-magic"],
)
def test_text_with_an_image_signature_is_refused(
    client: TestClient, data: bytes, status: int, words: tuple[str, ...]
) -> None:
    problem(upload(client, data), status, *words)
    as_json = client.post(
        "/v1/discriminate",
        json={"model": "tiny-gan", "images": [base64.b64encode(data).decode()]},
    )
    problem(as_json, status, "image 0", *words)


# --- request bodies -----------------------------------------------------------------------


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str) -> bytes:
    out = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        out.append(data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


@pytest.mark.parametrize(
    ("parts", "words"),
    [
        ([("images", "a.png", b"x")] * 5000, ("Too many files", "256")),
        ([("labels", None, b"1")] * 5000, ("Too many fields", "16")),
    ],
    ids=["5000-files", "5000-fields"],
)
def test_a_multipart_body_with_thousands_of_parts_is_refused(
    client: TestClient, parts: list[tuple[str, str | None, bytes]], words: tuple[str, ...]
) -> None:
    body = _multipart(parts, "b0undary")
    assert len(body) < 1_000_000  # under the body limit: the part count is what is refused
    r = client.post(
        "/v1/discriminate",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b0undary"},
    )
    problem(r, 413, *words)


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/v1/sample", 422, ("recursion limit",)),
        ("/v1/interpolate", 422, ("recursion limit",)),
        ("/v1/jobs", 422, ("recursion limit",)),
        ("/v1/discriminate", 422, ("recursion limit",)),
    ],
)
def test_deeply_nested_json_is_refused(
    client: TestClient, path: str, status: int, words: tuple[str, ...]
) -> None:
    depth = 100_000
    body = '{"model": ' + "[" * depth + "]" * depth + "}"
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    problem(r, status, *words)


@pytest.mark.parametrize("path", ["/v1/sample", "/v1/interpolate", "/v1/jobs"])
@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_body_that_is_not_json_is_unsupported(
    client: TestClient, path: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = client.post(path, content=b'{"model": "tiny-gan"}', headers=headers)
    problem(r, 415, "application/json")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/x+json"])
def test_json_content_types_with_parameters_or_suffixes_are_json(
    client: TestClient, content_type: str
) -> None:
    body = b'{"model": "tiny-gan", "format": "npy"}'
    r = client.post("/v1/sample", content=body, headers={"content-type": content_type})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"model": ', ("Invalid JSON", "EOF")),
        (b"", ("Invalid JSON",)),
        (b"[1]", ("object",)),
        (b'{"model": "\xff"}', ("Invalid JSON", "unicode")),  # not UTF-8
    ],
)
def test_malformed_sample_json_is_a_validation_problem(
    client: TestClient, body: bytes, words: tuple[str, ...]
) -> None:
    r = client.post("/v1/sample", content=body, headers={"content-type": "application/json"})
    assert problem(r, 422, *words).get("field") is None  # the body, not one of its fields


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_inf_in_a_latent_are_refused(client: TestClient, value: str) -> None:
    latent = ", ".join([value] + ["0.5"] * 7)
    body = f'{{"model": "tiny-gan", "from": {{"latent": [{latent}]}}, "to": {{"seed": 1}}}}'
    r = client.post("/v1/interpolate", content=body, headers={"content-type": "application/json"})
    assert problem(r, 422, "NaN or infinity")["field"] == "latent"


@pytest.mark.parametrize("path", ["/v1/sample", "/v1/interpolate"])
def test_nan_truncation_is_refused(client: TestClient, path: str) -> None:
    ends = '"from": {"seed": 1}, "to": {"seed": 2}, ' if path == "/v1/interpolate" else ""
    body = f'{{"model": "tiny-gan", {ends}"truncation": NaN}}'
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert problem(r, 422)["field"] == "truncation"


def test_n_at_its_limit_is_served_and_past_it_refused(
    client: TestClient, settings: Settings
) -> None:
    limit = settings.max_n
    body = {"model": "tiny-gan", "seed": 0, "format": "npy"}
    at = client.post("/v1/sample", json={**body, "n": limit})
    assert at.status_code == 200
    assert np.load(io.BytesIO(at.content)).shape == (limit, 28, 28, 1)
    over = f"n={limit + 1} is over the limit of {limit}"
    assert problem(client.post("/v1/sample", json={**body, "n": limit + 1}), 413, over)["field"]
    seeds = list(range(limit + 1))
    problem(client.post("/v1/sample", json={"model": "tiny-gan", "seeds": seeds}), 413, over)
    problem(client.get("/v1/sample.png", params={"model": "tiny-gan", "n": limit + 1}), 413, over)
    problem(client.post("/v1/sample", json={**body, "n": 2**64}), 413, "over the limit")


def test_steps_at_their_limit_are_served_and_past_them_refused(
    client: TestClient, settings: Settings
) -> None:
    limit = settings.max_steps
    body = {"model": "tiny-gan", "from": {"seed": 1}, "to": {"seed": 2}, "format": "npy"}
    at = client.post("/v1/interpolate", json={**body, "steps": limit})
    assert at.status_code == 200
    assert np.load(io.BytesIO(at.content)).shape == (limit, 28, 28, 1)
    over = client.post("/v1/interpolate", json={**body, "steps": limit + 1})
    assert problem(over, 413, f"steps={limit + 1} is over the limit of {limit}")["field"]
    assert problem(client.post("/v1/interpolate", json={**body, "steps": 1}), 422)["field"]


ENDS = {"model": "tiny-cgan", "from": {"seed": 1}, "to": {"seed": 2}}
NPY = {"content-type": "application/x-npy"}
LABELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "negative": ("POST", "/v1/sample", {"json": {"model": "tiny-cgan", "labels": -1}}),
    "past-int64": ("POST", "/v1/sample", {"json": {"model": "tiny-cgan", "labels": 2**64}}),
    "one-of-a-list": (
        "POST",
        "/v1/sample",
        {"json": {"model": "tiny-cgan", "n": 2, "labels": [0, 10]}},
    ),
    "query-past-int64": (
        "GET",
        "/v1/sample.png",
        {"params": {"model": "tiny-cgan", "label": 2**70}},
    ),
    "interpolate": ("POST", "/v1/interpolate", {"json": {**ENDS, "label": 10}}),
    "interpolate-past-int64": ("POST", "/v1/interpolate", {"json": {**ENDS, "label": 2**70}}),
    "discriminate-past-int64": (
        "POST",
        "/v1/discriminate",
        {
            "params": {"model": "tiny-cgan", "labels": "99999999999999999999999"},
            "content": imaging.encode_npy(digit()[None, :, :, None]),
            "headers": NPY,
        },
    ),
}


@pytest.mark.parametrize(("method", "path", "kwargs"), LABELS.values(), ids=LABELS.keys())
def test_labels_out_of_range_are_refused(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    field = "label" if path == "/v1/interpolate" else "labels"  # each names its own field
    body = problem(client.request(method, path, **kwargs), 422, f"{field} must lie in 0..9")
    assert body["field"] == field, body


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/v1/sample", {"json": {"model": "../tiny-gan"}}, 422),
        ("POST", "/v1/sample", {"json": {"model": "tiny-gan\x00"}}, 422),
        ("POST", "/v1/sample", {"json": {"model": "tiny-gan", "version": "../1"}}, 404),
        ("POST", "/v1/sample", {"json": {"model": "tiny-gan", "version": "1\x00"}}, 404),
        ("GET", "/v1/sample.png", {"params": {"model": "..\\tiny-gan"}}, 422),
        ("GET", "/v1/models/tiny-gan%00", {}, 422),
        ("GET", "/v1/models/..%2Ftiny-gan", {}, 404),
        ("GET", "/v1/models/%2E%2E", {}, 422),
        ("PUT", "/v1/models/tiny-gan%00/aliases/canary", {"json": {"version": 1}}, 422),
        ("PUT", "/v1/models/tiny-gan/aliases/%2E%2E", {"json": {"version": 1}}, 422),
        ("GET", "/v1/jobs/..%2F..%2Fetc", {}, 404),
        ("GET", "/v1/jobs/abc%00def", {}, 404),
        ("DELETE", "/v1/jobs/%2E%2E", {}, 404),
        (
            "POST",
            "/v1/discriminate",
            {
                "params": {"model": "../tiny-gan"},
                "content": imaging.encode_npy(digit()[None]),
                "headers": NPY,
            },
            404,
        ),
    ],
)
def test_names_with_dot_dot_and_nul_are_refused(
    client: TestClient,
    models_dir: Path,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    before = sorted(p.relative_to(models_dir.parent) for p in models_dir.parent.rglob("*"))
    problem(client.request(method, path, **kwargs), status)
    after = sorted(p.relative_to(models_dir.parent) for p in models_dir.parent.rglob("*"))
    assert after == before  # nothing was created, anywhere near the repository


def test_an_alias_for_an_unknown_model_creates_nothing(
    client: TestClient, models_dir: Path
) -> None:
    r = client.put("/v1/models/no-such-model/aliases/production", json={"version": 1})
    problem(r, 404, "no-such-model")
    assert not (models_dir / "no-such-model").exists()
    assert client.get("/readyz").status_code == 200


# --- dataset uploads ----------------------------------------------------------------------


def _zip(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _forged_size(data: bytes, size: int) -> bytes:
    """A zip whose headers understate its one entry's uncompressed size."""
    out = bytearray(data)
    struct.pack_into("<I", out, out.find(b"PK\x03\x04") + 22, size)
    struct.pack_into("<I", out, out.find(b"PK\x01\x02") + 24, size)
    return bytes(out)


def _flag(data: bytes, bit: int) -> bytes:
    """Set a general-purpose flag bit (0: encrypted) in the local and central headers."""
    out = bytearray(data)
    out[out.find(b"PK\x03\x04") + 6] |= bit
    out[out.find(b"PK\x01\x02") + 8] |= bit
    return bytes(out)


def _corrupt_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, images=np.zeros((4, 28, 28), np.uint8), labels=np.array([0, 1, 0, 1]))
    out = bytearray(buf.getvalue())
    out[200] ^= 0xFF  # inside images.npy's data: the CRC no longer matches
    return bytes(out)


PNG = encode(digit(), "PNG")
DATASETS = {
    "backslash-dot-dot": (_zip({"..\\evil\\x.png": PNG}), 422, "inside the archive"),
    "drive-letter": (_zip({"C:/evil/x.png": PNG}), 422, "inside the archive"),
    "forged-size": (_forged_size(_zip({"a/x.png": bytes(100_000)}), 1000), 422, "not readable"),
    "encrypted": (_flag(_zip({"a/x.png": PNG, "b/y.png": PNG}), 1), 422, "not readable"),
    "long-name": (_zip({"a/" + "x" * 300 + ".png": PNG}), 422, "over 255 bytes"),
    "too-many-files": (_zip({f"a/{i}.png": b"" for i in range(60)}), 413, "the limit is 50"),
    "pixel-bomb": (_zip({"a/x.png": blank_png(9000, 9000)}, zipfile.ZIP_STORED), 422, "9000x9000"),
    "forged-png-header": (
        _zip({"a/x.png": blank_png(100_000, 100_000, with_pixels=False)}),
        422,
        "not a readable image",
    ),
    "corrupt-npz": (_corrupt_npz(), 422, "not a readable npz"),
}


@pytest.mark.parametrize(("data", "status", "words"), DATASETS.values(), ids=DATASETS.keys())
def test_hostile_dataset_uploads_are_refused(
    models_dir: Path, tmp_path: Path, data: bytes, status: int, words: str
) -> None:
    settings = app_settings(models_dir, data_dir=tmp_path / "data", max_dataset_files=50)
    with TestClient(create_app(settings)) as c:
        problem(c.post("/v1/datasets", files={"file": ("x.zip", data)}), status, words)
        assert c.get("/v1/datasets").json() == []
        assert not list((tmp_path / "data" / "datasets").iterdir())  # no leftovers
        assert not (tmp_path / "evil").exists() and not (tmp_path / "data" / "evil").exists()
        healthy(c)


# --- training configs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"batch_size": 10**9},
        {"latent_dim": 10**7},
        {"network.g_hidden": 10**6},
        {"eval_samples": 10**9},
        {"d_steps": 10**6},
        {"seed": 2**64},
        {"max_steps": 2**70},
        {"x" * 10_000: 1},
    ],
    ids=lambda o: next(iter(o))[:16],
)
def test_a_training_config_asking_for_absurd_sizes_is_refused(
    client: TestClient, overrides: dict[str, int]
) -> None:
    r = client.post("/v1/jobs", json={"model": "tiny-cgan", "overrides": overrides})
    body = problem(r, 422, "invalid config")
    assert body["field"].startswith("overrides."), body
    assert client.get("/v1/jobs").json()["total"] == 0


# --- version references -----------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["١", "²", "𝟑", "9" * 5000, "-1", " 1"])
def test_a_version_reference_that_is_no_number_or_name_is_refused_everywhere(
    client: TestClient, ref: str
) -> None:
    body = {"model": "tiny-gan", "version": ref, "format": "npy"}
    problem(client.post("/v1/sample", json=body), 404, "invalid version")
    query = {"model": "tiny-gan", "version": ref}  # past 64 characters, the query's own bound
    status = 422 if len(ref) > 64 else 404
    problem(client.get("/v1/sample.png", params=query), status, "version")
    interpolate = {"model": "tiny-gan", "version": ref, "from": {"seed": 1}, "to": {"seed": 2}}
    problem(client.post("/v1/interpolate", json=interpolate), 404, "invalid version")
    form = {"model": "tiny-gan", "version": ref}
    files = {"images": ("d.png", imaging.encode_png(np.zeros((28, 28, 1), np.uint8)))}
    problem(client.post("/v1/discriminate", data=form, files=files), 404, "invalid version")


# --- round two: bodies that cost more than they look ---------------------------------------


@pytest.mark.parametrize("size", [(8192, 1), (1, 8192), (8192, 2048)])
def test_an_image_long_in_one_side_resizes_in_bounded_work(
    client: TestClient, size: tuple[int, int]
) -> None:
    """Lanczos alone over a 16,000,000 x 1 image took 2.7 s and 800 MB; now the box reduction
    comes first, and a side past max_image_side is refused before decoding."""
    long = blank_png(*size)
    ok = upload(client, long, resize="true")
    assert ok.status_code == 200 and len(ok.json()["results"]) == 1, ok.text


@pytest.mark.parametrize("size", [(16_000_000, 1), (1, 16_000_000), (8193, 8)])
def test_an_image_past_the_side_limit_is_refused_before_decoding(
    client: TestClient, size: tuple[int, int]
) -> None:
    problem(upload(client, blank_png(*size), resize="true"), 413, "a side")


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/sample", b'{"model": "tiny-gan", "seeds": [' + b"1," * 300_000 + b"1]}"),
        (
            "/v1/interpolate",
            b'{"model": "tiny-gan", "start": {"latent": [' + b"0," * 300_000 + b"0]}}",
        ),
        (
            "/v1/discriminate",
            b'{"model": "tiny-gan", "labels": [' + b"0," * 300_000 + b'0], "images": []}',
        ),
        ("/v1/jobs", b'{"model": "tiny-gan", "overrides": {"x": [' + b"0," * 300_000 + b"0]}}"),
    ],
)
def test_a_json_body_with_too_many_values_is_refused_before_parsing(
    client: TestClient, path: str, body: bytes
) -> None:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    problem(r, 413, "262144 values", "npy")
