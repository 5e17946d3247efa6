"""What the endpoints compute, apart from HTTP: latents, labels, engine calls, uint8 images.

Rules a client can rely on (and reproduce with numpy and ONNX Runtime alone):
- image i of a request uses seed ``seeds[i]`` (``seed + i`` when one seed is given);
- a conditional model's label defaults to ``seed % num_classes``, so a seed names one image;
- truncation resamples, per seed, the latent components beyond the threshold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.serving.pool import LoadedModel
from core import imaging, latent
from core.errors import InvalidInput
from core.repository import Manifest


@dataclass(frozen=True)
class Samples:
    images: np.ndarray  # uint8 [N, H, W, C]
    seeds: list[int] | None  # None: drawn from latents the caller gave
    labels: np.ndarray | None  # int64 [N]
    truncation: float | None
    latents: np.ndarray | None = None  # float32 [N, latent_dim], when asked for


def resolve_labels(
    manifest: Manifest,
    seeds: Sequence[int],
    labels: int | Sequence[int] | None,
    field: str = "labels",
) -> np.ndarray | None:
    if not manifest.conditional:
        if labels is not None:
            raise InvalidInput(f"{manifest.name} is unconditional: omit {field}", field=field)
        return None
    k = manifest.num_classes
    if labels is None:
        return np.asarray([s % k for s in seeds], dtype=np.int64)
    if isinstance(labels, int):
        labels = [labels] * len(seeds)
    elif len(labels) != len(seeds):
        raise InvalidInput(
            f"{len(labels)} labels for {len(seeds)} images: give one, or one per image",
            field=field,
        )
    # Checked as Python ints: a label past int64 would overflow numpy, not fail a range check.
    if any(not 0 <= y < k for y in labels):
        raise InvalidInput(f"{field} must lie in 0..{k - 1} for {manifest.name}", field=field)
    return np.asarray(labels, dtype=np.int64)


def check_truncation(truncation: float | None, minimum: float) -> None:
    # Resampling cost grows as the threshold shrinks; a floor keeps it bounded.
    if truncation is not None and truncation < minimum:
        raise InvalidInput(f"truncation must be at least {minimum}", field="truncation")


async def sample(
    model: LoadedModel,
    seeds: Sequence[int],
    labels: int | Sequence[int] | None,
    truncation: float | None,
    *,
    with_latents: bool = False,
) -> Samples:
    """The images the seeds name; ``with_latents`` also returns the latents they came from,
    drawn once (in a worker thread) and sent to the engine as they are."""
    y = resolve_labels(model.manifest, seeds, labels)
    if not with_latents:
        return Samples(await model.sample(seeds, y, truncation), list(seeds), y, truncation)
    m = model.manifest
    z = await asyncio.to_thread(latent.latents, seeds, m.latent.dim, m.latent.prior, truncation)
    images = await model.generate({"z": z}, y)
    return Samples(images, list(seeds), y, truncation, z)


async def from_latents(
    model: LoadedModel, vectors: Sequence[Sequence[float]], labels: int | Sequence[int] | None
) -> Samples:
    """The images of latent vectors a caller chose, each checked as an interpolation endpoint
    is; a conditional model needs the labels, as there is no seed to default them from."""
    m = model.manifest
    if m.conditional and labels is None:
        raise InvalidInput(f"{m.name} is conditional: give labels with latents", field="labels")
    rows = []
    for i, vector in enumerate(vectors):
        try:
            rows.append(latent.validate_latent(vector, m.latent.dim))
        except ValueError as e:
            raise InvalidInput(f"latents[{i}]: {e}", field="latents") from e
    z = np.stack(rows)
    y = resolve_labels(m, range(len(z)), labels)
    return Samples(await model.generate({"z": z}, y), None, y, None, z)


async def interpolate(
    model: LoadedModel,
    start: np.ndarray,
    end: np.ndarray,
    steps: int,
    method: str,
    label: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(t [steps], uint8 frames [steps, H, W, C]) along lerp/slerp from start to end."""
    m = model.manifest
    if m.conditional and label is None:
        raise InvalidInput(f"{m.name} is conditional: give a label", field="label")
    y = resolve_labels(m, range(steps), label, field="label")
    t = latent.interpolation_steps(steps)
    z = (latent.slerp if method == "slerp" else latent.lerp)(start, end, t)
    return t, await model.generate({"z": z}, y)


def endpoint_latent(
    manifest: Manifest, seed: int | None, vector: list[float] | None, truncation: float | None
) -> np.ndarray:
    dim, prior = manifest.latent.dim, manifest.latent.prior
    if vector is not None:
        try:
            return latent.validate_latent(vector, dim)
        except ValueError as e:
            raise InvalidInput(str(e), field="latent") from e
    assert seed is not None
    return latent.latents([seed], dim, prior, truncation)[0]


async def discriminate(
    model: LoadedModel, images_u8: np.ndarray, labels: int | Sequence[int] | None
) -> np.ndarray:
    """Logits [N] for uint8 images [N, H, W, C] of the model's shape; one label applies to
    every image, as in ``sample``."""
    m = model.manifest
    if m.conditional and labels is None:
        raise InvalidInput(
            f"{m.name} is conditional: give one label for all images, or one per image",
            field="labels",
        )
    if not isinstance(labels, int) and labels is not None and len(labels) == 1:
        labels = labels[0]
    y = resolve_labels(m, range(len(images_u8)), labels) if labels is not None else None
    x = imaging.to_model_input(images_u8, _range(m))
    return await model.discriminate(x, y)


def check_image_shape(manifest: Manifest, images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] (or [N, H, W] for one channel) of exactly the model's shape."""
    c, h, w = manifest.image_shape
    if images.dtype != np.uint8:
        raise InvalidInput(f"npy images must be uint8, got {images.dtype}", field="images")
    if images.ndim == 3 and c == 1:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != (h, w, c) or len(images) == 0:
        raise InvalidInput(
            f"npy images must be uint8 [N, {h}, {w}, {c}], got {list(images.shape)}",
            field="images",
        )
    return images


def _range(m: Manifest) -> tuple[float, float]:
    lo, hi = m.output_range
    return lo, hi
