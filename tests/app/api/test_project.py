"""app.api.project: POST /v1/project as multipart, JSON and .npy, through the real app."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from core import imaging
from core.datasets import load_dataset
from tests.app.helpers import npy, problem
from tests.conftest import ROOT, app_settings

SMALL = {"steps": 3, "restarts": 2}


def _b64(images: np.ndarray) -> list[str]:
    return [base64.b64encode(imaging.encode_png(im)).decode() for im in images]


def _pixels(png_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_b64))))


def _generated(client: TestClient, model: str, **fields: object) -> np.ndarray:
    return npy(client.post("/v1/sample", json={"model": model, "format": "npy", **fields}))


def test_multipart_json_and_npy_agree(client: TestClient) -> None:
    images = _generated(client, "tiny-gan", seeds=[11, 12])
    pngs = [imaging.encode_png(im) for im in images]
    multi = client.post(
        "/v1/project",
        data={"model": "tiny-gan", "steps": "3", "restarts": "2"},
        files=[("images", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)],
    )
    as_json = client.post(
        "/v1/project", json={"model": "tiny-gan", "images": _b64(images), **SMALL}
    )
    as_npy = client.post(
        "/v1/project",
        params={"model": "tiny-gan", **SMALL},
        content=imaging.encode_npy(images),
        headers={"content-type": "application/x-npy"},
    )
    bodies = []
    for r in (multi, as_json, as_npy):
        assert r.status_code == 200, r.text
        assert r.headers["x-model"] == "tiny-gan"
        bodies.append(r.json())
    assert bodies[0] == bodies[1] == bodies[2]  # the same search: seeded, whatever the form
    results = bodies[0]["results"]
    assert len(results) == 2 and bodies[0]["distance"] == "pixel"
    for r in results:
        assert len(r["latent"]) == 8 and r["label"] is None and r["steps"] == 3
        assert r["distance"] >= 0


def test_a_projected_latent_draws_its_reconstruction_byte_for_byte(client: TestClient) -> None:
    images = _generated(client, "tiny-cgan", seeds=[5, 6, 7], labels=[1, 2, 3])
    body = {"model": "tiny-cgan", "images": _b64(images), **SMALL}
    results = client.post("/v1/project", json=body).json()["results"]
    latents = [r["latent"] for r in results]
    labels = [r["label"] for r in results]
    assert all(0 <= y < 10 for y in labels)
    resampled = _generated(client, "tiny-cgan", latents=latents, labels=labels)
    for r, image in zip(results, resampled, strict=True):
        reconstruction = _pixels(r["png"])
        np.testing.assert_array_equal(reconstruction, image[..., 0])
        walk = {"from": {"latent": r["latent"]}, "to": {"seed": 1}, "steps": 3}
        frames = npy(
            client.post(
                "/v1/interpolate",
                json={"model": "tiny-cgan", **walk, "label": r["label"], "format": "npy"},
            )
        )
        np.testing.assert_array_equal(frames[0, ..., 0], reconstruction)


def test_given_labels_are_kept(client: TestClient) -> None:
    images = _generated(client, "tiny-cgan", seeds=[1, 2], labels=4)
    r = client.post(
        "/v1/project",
        params={"model": "tiny-cgan", "labels": "7,3", "steps": 2},
        content=imaging.encode_npy(images),
        headers={"content-type": "application/x-npy"},
    )
    assert r.status_code == 200, r.text
    assert [x["label"] for x in r.json()["results"]] == [7, 3]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": "nope"}, 404, "model"),
        ({"steps": 10_000}, 413, "steps"),
        ({"restarts": 99}, 413, "restarts"),
        ({"steps": 0}, 422, "steps"),
        ({"distance": "cosine"}, 422, "distance"),
        ({"distance": "features"}, 422, "distance"),  # tiny models were never evaluated
        ({"labels": [1]}, 422, "labels"),  # tiny-gan is unconditional
        ({"images": ["not base64!"]}, 422, None),
        ({"images": []}, 422, "images"),
    ],
)
def test_bad_requests_are_clear_problems(
    client: TestClient, body: dict, status: int, field: str | None
) -> None:
    image = _b64(np.zeros((1, 28, 28, 1), np.uint8))
    payload = {"model": "tiny-gan", "images": image, **SMALL, **body}
    answer = problem(client.post("/v1/project", json=payload), status)
    if field is not None:
        assert answer["field"] == field


def test_wrong_sizes_labels_and_forms_are_refused(client: TestClient) -> None:
    big = imaging.encode_png(np.zeros((56, 56, 1), np.uint8))
    files = [("images", ("a.png", big, "image/png"))]
    assert (
        "resize"
        in problem(client.post("/v1/project", data={"model": "tiny-gan"}, files=files), 422)[
            "detail"
        ]
    )
    ok = client.post(
        "/v1/project", data={"model": "tiny-gan", "resize": "true", "steps": "2"}, files=files
    )
    assert ok.status_code == 200, ok.text
    bad_steps = client.post(
        "/v1/project", data={"model": "tiny-gan", "steps": "x", "resize": "1"}, files=files
    )
    assert problem(bad_steps, 422)["field"] == "steps"
    out_of_range = {"model": "tiny-cgan", "labels": "12", "resize": "true"}
    assert problem(client.post("/v1/project", data=out_of_range, files=files), 422)["field"] == (
        "labels"
    )
    wrong_shape = client.post(
        "/v1/project",
        params={"model": "tiny-gan"},
        content=imaging.encode_npy(np.zeros((2, 14, 14, 1), np.uint8)),
        headers={"content-type": "application/x-npy"},
    )
    assert problem(wrong_shape, 422)["field"] == "images"
    problem(client.post("/v1/project", content=b"x", headers={"content-type": "text/plain"}), 415)


@pytest.fixture
def strict_client(models_dir: Path) -> Iterator[TestClient]:
    settings = app_settings(
        models_dir, request_timeout_s=0.5, max_project_images=2, max_project_steps=100_000
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_budgets_over_the_request_timeout_or_the_image_limit_are_refused(
    strict_client: TestClient,
) -> None:
    image = _b64(np.zeros((1, 28, 28, 1), np.uint8))
    body = {"model": "tiny-gan", "images": image * 2}
    slow = problem(
        strict_client.post("/v1/project", json={**body, "steps": 100_000, "restarts": 10}), 413
    )
    assert slow["field"] == "steps" and "request timeout" in slow["detail"]
    many = problem(strict_client.post("/v1/project", json={**body, "images": image * 3}), 413)
    assert many["field"] == "images"
    fine = strict_client.post("/v1/project", json={**body, "steps": 2})
    assert fine.status_code == 200, fine.text


def test_the_features_distance_is_the_classifiers_on_a_committed_model(tmp_path: Path) -> None:
    """mnist-gan was evaluated under the project's classifier: the distance reported is the
    mean squared difference of that classifier's features, image against reconstruction."""
    settings = Settings(
        models_dir=ROOT / "models",
        data_dir=tmp_path,
        registry_poll_seconds=0,
        embedded_worker=False,
        project_bank_size=256,
    )
    _, held_out = load_dataset("builtin:mnist").split(0.1, seed=0)
    digits = held_out.images[:2].transpose(0, 2, 3, 1)
    body = {"model": "mnist-gan", "images": _b64(digits), "distance": "features", "steps": 4}
    with TestClient(create_app(settings)) as c:
        answer = c.post("/v1/project", json=body)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    classifier = ort.InferenceSession(str(settings.features_classifier))
    recon = np.stack([_pixels(r["png"])[..., None] for r in results])

    def features(images: np.ndarray) -> np.ndarray:
        x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255
        return np.asarray(classifier.run(["features"], {"image": x})[0])

    expected = ((features(digits) - features(recon)) ** 2).mean(1)
    np.testing.assert_allclose([r["distance"] for r in results], expected, rtol=1e-4, atol=1e-6)
    assert all(r["steps"] == 4 and r["label"] is None for r in results)
