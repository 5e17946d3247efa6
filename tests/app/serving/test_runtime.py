"""The in-process runtime: seeds to the pixels the seed contract names, and a hung engine."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.serving.runtime import Runtime
from app.settings import Settings
from core import imaging, latent
from core.errors import IntegrityError
from core.repository import MANIFEST, Manifest, Repository
from tests.conftest import app_settings

SETTINGS = Settings(device="cpu")


def _version(models_dir: Path, name: str) -> tuple[Path, Manifest]:
    repo = Repository(models_dir)
    return repo.version_dir(name, 1), repo.verify(name, 1)


def test_seeds_give_the_pixels_of_the_seed_contract(models_dir: Path) -> None:
    folder, manifest = _version(models_dir, "tiny-cgan")
    runtime = Runtime.load(folder, manifest, SETTINGS)
    seeds, labels = np.array([7, 8, 2**40]), np.array([1, 2, 3])
    pixels = runtime.generate({"seed": seeds, "label": labels})
    z = latent.latents(seeds.tolist(), manifest.latent.dim, manifest.latent.prior)
    session = ort.InferenceSession(str(folder / "generator.onnx"))
    expected = session.run(["image"], {"z": z, "label": labels})[0]
    lo, hi = manifest.output_range
    np.testing.assert_array_equal(pixels, imaging.to_uint8(expected, (lo, hi)))
    assert runtime.generate({"z": z, "label": labels}).tobytes() == pixels.tobytes()


def test_the_discriminator_scores_images_in_the_output_range(models_dir: Path) -> None:
    folder, manifest = _version(models_dir, "tiny-gan")
    runtime = Runtime.load(folder, manifest, SETTINGS)
    images = np.zeros((3, *manifest.image_shape), dtype=np.float32)
    logits = runtime.discriminate({"image": images})
    assert logits.shape == (3, 1) and np.isfinite(logits).all()


def test_a_version_whose_graph_disagrees_with_its_manifest_is_refused_at_load(
    models_dir: Path,
) -> None:
    folder, _ = _version(models_dir, "tiny-gan")
    manifest_file = folder / MANIFEST
    doc = json.loads(manifest_file.read_text())
    doc["image_shape"] = [1, 32, 32]  # the graph makes 28 x 28
    manifest_file.write_text(json.dumps(doc))
    manifest = Repository(models_dir).verify("tiny-gan", 1)
    with pytest.raises(IntegrityError, match="the manifest says"):
        Runtime.load(folder, manifest, SETTINGS)


def test_a_hung_engine_fails_its_callers_in_time_and_takes_the_replica_out_of_rotation(
    models_dir: Path,
) -> None:
    body = {"model": "tiny-gan", "seed": 1, "format": "npy"}
    settings = app_settings(models_dir, request_timeout_s=1.0)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        runtime = client.app_state["pool"].serving("tiny-gan").runtime  # the lifespan's state
        release = threading.Event()
        engine_run = runtime._generator.run

        def hang(inputs: dict[str, np.ndarray]) -> np.ndarray:
            release.wait(30)  # an engine call that does not return, as a wedged GPU would
            return engine_run(inputs)

        runtime._generator.run = hang
        try:
            start = time.monotonic()
            r = client.post("/v1/sample", json=body)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert 1.0 <= time.monotonic() - start < 10
            time.sleep(0.2)  # the call has now run past the timeout
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert "hung" in ready.json()["models"]["tiny-gan"]["error"]
            assert client.get("/healthz").status_code == 200  # alive: the loop still answers
        finally:
            release.set()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/sample", json=body).status_code == 200
