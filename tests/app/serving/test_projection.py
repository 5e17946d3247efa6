"""app.serving.projection: the search on real generators, the tiny test models and the committed
ones, through ONNX Runtime as the engine processes run them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from app.serving import projection
from app.serving.projection import Bank, Budget, GenerateFn
from app.serving.runtime import Engines
from app.settings import Settings
from core import latent
from core.repository import Repository

ROOT = Path(__file__).resolve().parents[3]


def _engines(models: Path, name: str) -> Engines:
    repo = Repository(models)
    version = repo.resolve(name, None)
    return Engines.load(repo.version_dir(name, version), repo.verify(name, version), Settings())


def _generate(engines: Engines) -> GenerateFn:
    async def generate(z: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        inputs = {"z": z} if y is None else {"z": z, "label": y}
        return await asyncio.to_thread(engines.generate, inputs)

    return generate


async def _pixels(images: np.ndarray) -> np.ndarray:
    return projection.embed_pixels(images)


def _bank(engines: Engines, size: int) -> Bank:
    return asyncio.run(projection.build_bank(_generate(engines), engines.manifest, size))


def _project(
    engines: Engines, bank: Bank, images: np.ndarray, budget: Budget, labels: np.ndarray | None
) -> projection.Projection:
    search = projection.search(
        _generate(engines),
        _pixels,
        bank,
        images,
        labels,
        budget,
        engines.manifest,
        np.random.default_rng(0),
    )
    return asyncio.run(search)


def _mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared pixel difference in [0, 1], every row of a [N, ...] against every of b."""
    x, y = projection.embed_pixels(a), projection.embed_pixels(b)
    return np.asarray(((x[:, None, :] - y[None, :, :]) ** 2).mean(-1), dtype=np.float64)


@pytest.mark.parametrize("name", ["tiny-gan", "tiny-cgan"])
def test_the_answer_is_the_image_its_latent_draws(models_dir: Path, name: str) -> None:
    engines = _engines(models_dir, name)
    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    out = _project(engines, _bank(engines, 64), images, Budget(steps=3, restarts=2), None)
    assert out.latents.dtype == np.float32 and out.latents.shape == (3, 8) and out.steps == 3
    assert (out.labels is None) == (name == "tiny-gan")
    inputs = {"z": out.latents} if out.labels is None else {"z": out.latents, "label": out.labels}
    np.testing.assert_array_equal(engines.generate(inputs), out.images)
    for i in range(3):  # alone, as a client regenerating one of them would
        one = {k: v[i : i + 1] for k, v in inputs.items()}
        np.testing.assert_array_equal(engines.generate(one)[0], out.images[i])
    np.testing.assert_allclose(out.distances, np.diag(_mse(images, out.images)), rtol=1e-5)


def test_more_steps_never_end_further_away(models_dir: Path) -> None:
    engines = _engines(models_dir, "tiny-cgan")
    bank = _bank(engines, 64)
    images = np.random.default_rng(2).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3])
    short = _project(engines, bank, images, Budget(steps=1, restarts=1), labels)
    long = _project(engines, bank, images, Budget(steps=12, restarts=1), labels)
    assert (long.distances <= short.distances).all()
    assert long.distances.mean() < short.distances.mean()
    assert long.labels is not None and long.labels.tolist() == [0, 1, 2, 3]


def test_a_generated_image_projects_much_closer_than_other_images_of_its_class() -> None:
    """mnist-cdcgan's own digits, labels searched: each comes back with its label, far closer
    to itself than the nearest of 30 other digits the model draws for that label."""
    engines = _engines(ROOT / "models", "mnist-cdcgan")
    m = engines.manifest
    labels = np.arange(5, dtype=np.int64)
    z = latent.latents(range(10**6, 10**6 + 5), m.latent.dim, m.latent.prior)
    images = engines.generate({"z": z, "label": labels})
    others = latent.latents(range(2 * 10**6, 2 * 10**6 + 150), m.latent.dim, m.latent.prior)
    other_labels = np.repeat(labels, 30)
    other_images = engines.generate({"z": others, "label": other_labels})
    out = _project(engines, _bank(engines, 1024), images, Budget(steps=30, restarts=2), None)
    assert out.labels is not None and out.labels.tolist() == labels.tolist()
    nearest_other = np.array(
        [_mse(images[i : i + 1], other_images[other_labels == i]).min() for i in range(5)]
    )
    assert (out.distances < nearest_other / 3).all(), (out.distances, nearest_other)


def test_features_need_a_model_evaluated_under_the_classifier(models_dir: Path) -> None:
    committed = Repository(ROOT / "models")
    assert projection.has_features(committed.manifest("mnist-gan", 4))
    assert not projection.has_features(Repository(models_dir).manifest("tiny-gan", 1))


def test_a_search_out_of_time_answers_with_its_starts(models_dir: Path) -> None:
    """Past the deadline no step runs: the answer is each image's nearest bank entry, with the
    steps taken (0) said, and still the image its latent draws."""
    engines = _engines(models_dir, "tiny-gan")
    bank = _bank(engines, 64)
    images = bank.pixels[[5, 9]]
    search = projection.search(
        _generate(engines),
        _pixels,
        bank,
        images,
        None,
        Budget(steps=50, restarts=1),
        engines.manifest,
        np.random.default_rng(0),
        deadline=time.monotonic(),
    )
    out = asyncio.run(search)
    assert out.steps == 0
    assert all(any((bank.z == z).all(1)) for z in out.latents)  # bank entries, unchanged
    np.testing.assert_array_equal(out.images, images)
    np.testing.assert_array_equal(engines.generate({"z": out.latents}), images)
    assert out.distances.tolist() == [0.0, 0.0]
