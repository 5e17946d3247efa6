"""Every endpoint and format through the real app (ASGI, lifespan run by TestClient)."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from core import imaging, latent
from core.repository import Repository
from tests.conftest import ROOT, app_settings

PROBLEM = "application/problem+json"


@pytest.fixture
def client(models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings(models_dir))) as c:
        yield c


def problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def npy(response) -> np.ndarray:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def test_sample_png_single_and_grid(client: TestClient) -> None:
    one = client.post("/v1/sample", json={"model": "tiny-gan", "seed": 3})
    assert one.headers["content-type"] == "image/png"
    assert one.headers["x-model"] == "tiny-gan" and one.headers["x-model-version"] == "1"
    assert Image.open(io.BytesIO(one.content)).size == (28, 28)
    grid = client.post("/v1/sample", json={"model": "tiny-gan", "seed": 3, "n": 6, "cols": 3})
    assert Image.open(io.BytesIO(grid.content)).size == (3 * 30 + 2, 2 * 30 + 2)


def test_npy_equals_onnx_runtime_on_the_documented_latent(
    client: TestClient, models_dir: Path
) -> None:
    """Anyone can reproduce an image from its seed with numpy and ONNX Runtime alone."""
    arr = npy(
        client.post("/v1/sample", json={"model": "tiny-gan", "seed": 40, "n": 5, "format": "npy"})
    )
    assert arr.dtype == np.uint8 and arr.shape == (5, 28, 28, 1)
    repo = Repository(models_dir)
    m = repo.manifest("tiny-gan", 1)
    z = np.stack(
        [
            np.random.default_rng(40 + i).uniform(-(3**0.5), 3**0.5, 8).astype(np.float32)
            for i in range(5)
        ]
    )
    session = ort.InferenceSession(str(repo.version_dir("tiny-gan", 1) / "generator.onnx"))
    out = session.run(["image"], {"z": z})[0]
    expected = np.rint((np.clip(out, 0, 1) - 0) / 1 * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert m.latent.prior == "uniform"
    np.testing.assert_array_equal(arr, expected)


def test_a_seed_names_one_image_whatever_the_batch(client: TestClient) -> None:
    body = {"model": "tiny-cgan", "format": "npy"}
    batch = npy(client.post("/v1/sample", json={**body, "seed": 100, "n": 7}))
    for i in (0, 3, 6):
        alone = npy(client.post("/v1/sample", json={**body, "seed": 100 + i}))
        np.testing.assert_array_equal(alone[0], batch[i])
    listed = npy(client.post("/v1/sample", json={**body, "seeds": [106, 100]}))
    np.testing.assert_array_equal(listed, batch[[6, 0]])


def test_conditional_labels_default_to_seed_mod_classes(client: TestClient) -> None:
    r = client.post("/v1/sample", json={"model": "tiny-cgan", "seed": 18, "n": 3, "format": "json"})
    assert [im["label"] for im in r.json()["images"]] == [8, 9, 0]
    explicit = client.post(
        "/v1/sample",
        json={"model": "tiny-cgan", "seed": 18, "n": 3, "labels": [8, 9, 0], "format": "npy"},
    )
    implicit = client.post(
        "/v1/sample", json={"model": "tiny-cgan", "seed": 18, "n": 3, "format": "npy"}
    )
    assert explicit.content == implicit.content
    other = client.post(
        "/v1/sample", json={"model": "tiny-cgan", "seed": 18, "n": 3, "labels": 2, "format": "npy"}
    )
    assert other.headers["x-labels"] == "2,2,2"
    assert other.content != implicit.content


def test_json_and_zip_formats(client: TestClient) -> None:
    r = client.post(
        "/v1/sample",
        json={"model": "tiny-gan", "seed": 5, "n": 2, "format": "json", "return_latents": True},
    )
    assert r.status_code == 200 and r.headers["x-model"] == "tiny-gan"
    images = r.json()["images"]
    assert [im["seed"] for im in images] == [5, 6]
    np.testing.assert_array_equal(
        np.asarray(images[1]["latent"], dtype=np.float32), latent.latent_for_seed(6, 8, "uniform")
    )
    png = Image.open(io.BytesIO(base64.b64decode(images[0]["png"])))
    arr = npy(client.post("/v1/sample", json={"model": "tiny-gan", "seed": 5, "format": "npy"}))
    np.testing.assert_array_equal(np.asarray(png)[..., None], arr[0])

    z = client.post("/v1/sample", json={"model": "tiny-gan", "seed": 5, "n": 3, "format": "zip"})
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = zf.namelist()
        assert "manifest.json" in names and len(names) == 4


def test_get_sample_png_matches_post(client: TestClient) -> None:
    get = client.get("/v1/sample.png", params={"model": "tiny-cgan", "seed": 9, "n": 4, "label": 1})
    post = client.post("/v1/sample", json={"model": "tiny-cgan", "seed": 9, "n": 4, "labels": 1})
    assert get.status_code == 200 and get.content == post.content


def test_truncation_is_deterministic_and_changes_images(client: TestClient) -> None:
    base = {"model": "tiny-cgan", "seed": 1, "n": 4, "format": "npy"}
    plain = client.post("/v1/sample", json=base).content
    t1 = client.post("/v1/sample", json={**base, "truncation": 0.5}).content
    assert t1 == client.post("/v1/sample", json={**base, "truncation": 0.5}).content
    assert t1 != plain


def test_interpolate_formats(client: TestClient) -> None:
    body = {"model": "tiny-cgan", "from": {"seed": 1}, "to": {"seed": 2}, "steps": 5, "label": 3}
    frames = npy(client.post("/v1/interpolate", json={**body, "format": "npy"}))
    assert frames.shape == (5, 28, 28, 1)
    ends = npy(
        client.post(
            "/v1/sample", json={"model": "tiny-cgan", "seeds": [1, 2], "labels": 3, "format": "npy"}
        )
    )
    np.testing.assert_array_equal(frames[[0, -1]], ends)
    gif = client.post("/v1/interpolate", json={**body, "format": "gif"})
    assert gif.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(gif.content)).n_frames >= 2
    webp = client.post("/v1/interpolate", json={**body, "format": "webp"})
    assert webp.headers["content-type"] == "image/webp"
    strip = Image.open(io.BytesIO(client.post("/v1/interpolate", json=body).content))
    assert strip.size == (5 * 30 + 2, 32)
    js = client.post("/v1/interpolate", json={**body, "format": "json", "method": "lerp"}).json()
    assert [f["t"] for f in js["frames"]] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    vec = [0.1] * 8
    r = client.post(
        "/v1/interpolate",
        json={"model": "tiny-gan", "from": {"latent": vec}, "to": {"seed": 4}, "format": "npy"},
    )
    assert npy(r).shape == (8, 28, 28, 1)


def test_discriminate_multipart_json_and_npy_agree(client: TestClient) -> None:
    images = npy(
        client.post("/v1/sample", json={"model": "tiny-gan", "seed": 0, "n": 3, "format": "npy"})
    )
    pngs = [imaging.encode_png(im) for im in images]
    multi = client.post(
        "/v1/discriminate",
        data={"model": "tiny-gan"},
        files=[("images", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)],
    )
    assert multi.status_code == 200, multi.text
    as_json = client.post(
        "/v1/discriminate",
        json={"model": "tiny-gan", "images": [base64.b64encode(p).decode() for p in pngs]},
    )
    as_npy = client.post(
        "/v1/discriminate",
        params={"model": "tiny-gan"},
        content=imaging.encode_npy(images),
        headers={"content-type": "application/x-npy"},
    )
    results = [r.json()["results"] for r in (multi, as_json, as_npy)]
    assert results[0] == results[1] == results[2]
    for score in results[0]:
        assert score["probability_real"] == pytest.approx(1 / (1 + np.exp(-score["logit"])))


def test_discriminate_conditional_needs_labels_and_resize(client: TestClient) -> None:
    big = imaging.encode_png(np.full((56, 56, 1), 200, np.uint8))
    files = [("images", ("a.png", big, "image/png"))]
    problem(
        client.post("/v1/discriminate", data={"model": "tiny-cgan", "labels": "1"}, files=files),
        422,
    )
    ok = client.post(
        "/v1/discriminate",
        data={"model": "tiny-cgan", "labels": "1", "resize": "true"},
        files=files,
    )
    assert ok.status_code == 200 and len(ok.json()["results"]) == 1
    missing = problem(
        client.post("/v1/discriminate", data={"model": "tiny-cgan", "resize": "true"}, files=files),
        422,
    )
    assert missing["field"] == "labels"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": "nope"}, 404, "model"),
        ({"model": "tiny-gan", "version": 9}, 404, "version"),
        ({"model": "tiny-gan", "version": "staging"}, 404, "version"),
        ({"model": "../etc"}, 422, "model"),
        ({"model": "tiny-gan", "n": 0}, 422, "n"),
        ({"model": "tiny-gan", "n": 5000}, 413, "n"),
        ({"model": "tiny-gan", "labels": 1}, 422, "labels"),
        ({"model": "tiny-cgan", "labels": 10}, 422, "labels"),
        ({"model": "tiny-cgan", "n": 2, "labels": [1, 2, 3]}, 422, "labels"),
        ({"model": "tiny-gan", "seed": -1}, 422, "seed"),
        ({"model": "tiny-gan", "seed": 1, "seeds": [1]}, 422, None),
        ({"model": "tiny-gan", "truncation": 0.001}, 422, "truncation"),
        ({"model": "tiny-gan", "format": "bmp"}, 422, "format"),
        ({"model": "tiny-gan", "extra": 1}, 422, "extra"),
    ],
)
def test_sample_bad_input(client: TestClient, body: dict, status: int, field: str | None) -> None:
    got = problem(client.post("/v1/sample", json=body), status)
    if field is not None:
        assert got["field"] == field


def test_malformed_bodies(client: TestClient) -> None:
    problem(
        client.post("/v1/sample", content=b"{nope", headers={"content-type": "application/json"}),
        422,
    )
    problem(
        client.post("/v1/discriminate", content=b"hello", headers={"content-type": "text/plain"}),
        415,
    )
    problem(
        client.post(
            "/v1/discriminate",
            params={"model": "tiny-gan"},
            content=b"\x93NUMPY junk",
            headers={"content-type": "application/x-npy"},
        ),
        422,
    )
    wrong = imaging.encode_npy(np.zeros((2, 5, 5), np.uint8))
    problem(
        client.post(
            "/v1/discriminate",
            params={"model": "tiny-gan"},
            content=wrong,
            headers={"content-type": "application/x-npy"},
        ),
        422,
    )
    text = [("images", ("a.png", b"not an image at all", "image/png"))]
    problem(client.post("/v1/discriminate", data={"model": "tiny-gan"}, files=text), 415)
    nan = '{"model": "tiny-gan", "from": {"seed": 1}, "to": {"latent": [NaN, 0, 0, 0, 0, 0, 0, 0]}}'
    problem(
        client.post("/v1/interpolate", content=nan, headers={"content-type": "application/json"}),
        422,
    )
    problem(
        client.post(
            "/v1/interpolate",
            json={"from": {"seed": 1}, "to": {"latent": [1.0]}, "model": "tiny-gan"},
        ),
        422,
    )
    problem(
        client.post(
            "/v1/interpolate",
            json={"from": {"seed": 1}, "to": {"seed": 2}, "steps": 5000, "model": "tiny-gan"},
        ),
        413,
    )
    problem(client.get("/v1/nothing-here"), 404)


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


def test_models_listing_and_alias_promotion(client: TestClient, models_dir: Path) -> None:
    listing = client.get("/v1/models").json()
    assert {m["name"] for m in listing} == {"tiny-gan", "tiny-cgan"}
    detail = client.get("/v1/models/tiny-cgan").json()
    assert detail["serving_version"] == 1
    manifest = detail["versions"][0]
    assert manifest["num_classes"] == 10 and "generator.onnx" in manifest["artifacts"]
    problem(client.get("/v1/models/nope"), 404)
    problem(client.put("/v1/models/tiny-gan/aliases/production", json={"version": 7}), 404)
    assert client.put("/v1/models/tiny-gan/aliases/canary", json={"version": 1}).status_code == 200
    assert client.get("/v1/models/tiny-gan").json()["aliases"] == {"production": 1, "canary": 1}
    r = client.post("/v1/sample", json={"model": "tiny-gan", "version": "canary"})
    assert r.headers["x-model-version"] == "1"


def test_a_version_serves_its_samples_grid(client: TestClient, models_dir: Path) -> None:
    url = "/v1/models/tiny-cgan/versions/1/samples.png"
    grid = models_dir / "tiny-cgan" / "1" / "samples.png"
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == grid.read_bytes()
    problem(client.get("/v1/models/tiny-cgan/versions/9/samples.png"), 404)
    problem(client.get("/v1/models/nope/versions/1/samples.png"), 404)
    problem(client.get("/v1/models/tiny-cgan/versions/0/samples.png"), 422)
    problem(client.get("/v1/models/Not..Ok/versions/1/samples.png"), 422)
    grid.write_bytes(grid.read_bytes()[:-1])  # not what the manifest's sha256 names
    assert "sha256" in problem(client.get(url), 500)["detail"]


def test_admin_routes_need_the_key(models_dir: Path) -> None:
    settings = app_settings(models_dir, api_key="s3cret")
    with TestClient(create_app(settings)) as c:
        url, body = "/v1/models/tiny-gan/aliases/canary", {"version": 1}
        problem(c.put(url, json=body), 401)
        problem(c.put(url, json=body, headers={"Authorization": "Bearer wrong"}), 401)
        ok = c.put(url, json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_health_ready_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["models"]["tiny-gan"]["version"] == 1
    client.post("/v1/sample", json={"model": "tiny-gan", "n": 3})
    text = client.get("/metrics").text
    assert 'gan_images_generated_total{model="tiny-gan",version="1"} 3.0' in text
    assert 'gan_http_requests_total{method="POST",route="/v1/sample",status="200"}' in text
    assert 'gan_model_loaded_version{model="tiny-cgan"} 1.0' in text
    assert "gan_batch_size_bucket" in text
    doc = client.get("/openapi.json").json()
    assert {"/v1/sample", "/v1/discriminate", "/v1/interpolate", "/v1/models"} <= set(doc["paths"])
    # Every reference resolves: a client generated from the document knows each body it gets.
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert {"SampleResponse", "SampleItem"} <= refs <= set(doc["components"]["schemas"])
    # Bodies read with json_body keep their named schemas.
    for path, method, model in [
        ("/v1/sample", "post", "SampleRequest"),
        ("/v1/interpolate", "post", "InterpolateRequest"),
        ("/v1/jobs", "post", "JobRequest"),
        ("/v1/models/{name}/aliases/{alias}", "put", "AliasUpdate"),
    ]:
        body = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{model}"}
    sample = doc["components"]["schemas"]["SampleRequest"]
    assert {"n", "seed", "seeds", "format"} <= set(sample["properties"])
    assert sample["additionalProperties"] is False


def test_request_id_is_echoed(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(len(i) == 32 and int(i, 16) >= 0 for i in made)


def test_default_model_setting(models_dir: Path) -> None:
    settings = app_settings(models_dir, default_model="tiny-cgan")
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/sample", json={}).headers["x-model"] == "tiny-cgan"
    with TestClient(create_app(app_settings(models_dir))) as c:
        assert c.post("/v1/sample", json={}).headers["x-model"] == "tiny-cgan"  # first by name


def test_a_request_not_served_in_time_gets_503(models_dir: Path) -> None:
    settings = app_settings(models_dir, request_timeout_s=1e-4)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/sample", json={"model": "tiny-cgan", "n": 512, "format": "npy"})
        body = problem(r, 503)
        assert "not served within" in body["detail"] and r.headers["retry-after"] == "1"
        assert c.get("/healthz").status_code == 200


def test_presets_list_every_training_config_in_full(client: TestClient) -> None:
    r = client.get("/v1/presets")
    assert r.status_code == 200
    presets = {p["name"]: p for p in r.json()}
    assert set(presets) == {p.stem for p in (ROOT / "training" / "configs").glob("*.toml")}
    cdcgan = presets["cdcgan"]
    assert cdcgan["conditional"] and cdcgan["architecture"] == "dcgan"
    assert cdcgan["config"]["max_steps"] == cdcgan["max_steps"]
    assert presets["paper"]["config"]["optimizer"]["name"] == "sgd"


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
    finally:
        logger.removeHandler(handler)
    (fields,) = [r.fields for r in records if r.fields["route"] == "/v1/sample"]  # type: ignore[attr-defined]
    assert fields["status"] == 200 and fields["request_id"] == "req-7"
    assert (fields["model"], fields["version"], fields["n"]) == ("tiny-gan", "1", "2")
