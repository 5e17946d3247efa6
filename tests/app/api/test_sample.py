"""app.api.sample: POST /v1/sample and GET /v1/sample.png, every format, through the real app."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from core import latent
from core.repository import Repository
from tests.app.helpers import npy, problem


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


def test_latents_give_the_images_of_those_vectors(client: TestClient) -> None:
    """The latents a seed names, given as vectors, draw the images the seeds draw."""
    seeds = [40, 41, 7]
    z = latent.latents(seeds, 8, "normal", None)  # tiny-cgan: latent dim 8, normal prior
    body = {"model": "tiny-cgan", "labels": [s % 10 for s in seeds], "format": "npy"}
    by_seed = npy(client.post("/v1/sample", json={**body, "seeds": seeds}))
    by_latent = client.post("/v1/sample", json={**body, "latents": z.tolist()})
    np.testing.assert_array_equal(npy(by_latent), by_seed)
    assert by_latent.headers["x-count"] == "3" and "x-seed" not in by_latent.headers
    answer = client.post(
        "/v1/sample",
        json={
            "model": "tiny-gan",
            "latents": [[0.5] * 8],
            "format": "json",
            "return_latents": True,
        },
    )
    item = answer.json()["images"][0]
    assert item["seed"] is None and item["latent"] == [0.5] * 8
    zipped = client.post(
        "/v1/sample", json={"model": "tiny-gan", "latents": [[0.0] * 8] * 2, "format": "zip"}
    )
    names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    assert sorted(names) == ["00000.png", "00001.png", "manifest.json"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": "tiny-gan", "latents": [[0.0] * 7]}, 422, "latents"),
        ({"model": "tiny-gan", "latents": [[0.0] * 8, [0.0] * 9]}, 422, "latents"),
        ({"model": "tiny-gan", "latents": [[1e39] + [0.0] * 7]}, 422, "latents"),
        ({"model": "tiny-gan", "latents": []}, 422, None),
        ({"model": "tiny-gan", "latents": [[0.0] * 8], "seed": 1}, 422, None),
        ({"model": "tiny-gan", "latents": [[0.0] * 8], "n": 2}, 422, None),
        ({"model": "tiny-gan", "latents": [[0.0] * 8], "truncation": 0.5}, 422, None),
        ({"model": "tiny-gan", "latents": [[0.0] * 8] * 1025}, 413, "n"),
        ({"model": "tiny-cgan", "latents": [[0.0] * 8]}, 422, "labels"),
        ({"model": "tiny-cgan", "latents": [[0.0] * 8], "labels": [1, 2]}, 422, "labels"),
    ],
)
def test_latents_bad_input(client: TestClient, body: dict, status: int, field: str | None) -> None:
    got = problem(client.post("/v1/sample", json=body), status)
    if field is not None:
        assert got["field"] == field


def test_latents_with_nan_are_refused(client: TestClient) -> None:
    body = b'{"model": "tiny-gan", "latents": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}'
    headers = {"content-type": "application/json"}
    got = problem(client.post("/v1/sample", content=body, headers=headers), 422)
    assert got["field"] == "latents" and "NaN" in got["detail"]
