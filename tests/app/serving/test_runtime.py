"""A version's engines: seeds to the pixels the seed contract names; a broken graph refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.serving.runtime import Engines
from app.settings import Settings
from core import imaging, latent
from core.errors import IntegrityError
from core.repository import MANIFEST, Manifest, Repository

SETTINGS = Settings(device="cpu")


def _version(models_dir: Path, name: str) -> tuple[Path, Manifest]:
    repo = Repository(models_dir)
    return repo.version_dir(name, 1), repo.verify(name, 1)


def test_seeds_give_the_pixels_of_the_seed_contract(models_dir: Path) -> None:
    folder, manifest = _version(models_dir, "tiny-cgan")
    engines = Engines.load(folder, manifest, SETTINGS)
    seeds, labels = np.array([7, 8, 2**40]), np.array([1, 2, 3])
    pixels = engines.generate({"seed": seeds, "label": labels})
    z = latent.latents(seeds.tolist(), manifest.latent.dim, manifest.latent.prior)
    session = ort.InferenceSession(str(folder / "generator.onnx"))
    expected = session.run(["image"], {"z": z, "label": labels})[0]
    lo, hi = manifest.output_range
    np.testing.assert_array_equal(pixels, imaging.to_uint8(expected, (lo, hi)))
    assert engines.generate({"z": z, "label": labels}).tobytes() == pixels.tobytes()


def test_the_discriminator_scores_images_in_the_output_range(models_dir: Path) -> None:
    folder, manifest = _version(models_dir, "tiny-gan")
    engines = Engines.load(folder, manifest, SETTINGS)
    logits = engines.discriminate({"image": np.zeros((3, *manifest.image_shape), np.float32)})
    assert logits.shape == (3, 1) and np.isfinite(logits).all()


def test_a_graph_that_disagrees_with_its_manifest_is_refused_at_load(models_dir: Path) -> None:
    folder, _ = _version(models_dir, "tiny-gan")
    doc = json.loads((folder / MANIFEST).read_text())
    doc["image_shape"] = [1, 32, 32]  # the graph makes 28 x 28
    (folder / MANIFEST).write_text(json.dumps(doc))
    manifest = Repository(models_dir).verify("tiny-gan", 1)
    with pytest.raises(IntegrityError, match="the manifest says"):
        Engines.load(folder, manifest, SETTINGS)
