"""A loaded version's engines: seeds in, pixels out; images in, logits out.

``Engines`` holds a verified version's generator and (when it has one) discriminator, warmed
up, and does what a batch needs around them: seeds drawn into latents (``core.latent``), the
engine's output mapped to uint8 pixels (``core.imaging``). It runs inside the version's engine
process (``app/serving/engine_process.py``), never in the server's.

    >>> engines = Engines.load(folder, manifest, settings)
    >>> pixels = engines.generate({"seed": np.array([7, 8])})  # uint8 [2, H, W, C]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.serving.engine import Engine, load_engine
from app.settings import Settings
from core import imaging, latent
from core.errors import IntegrityError
from core.repository import Manifest

Inputs = dict[str, np.ndarray]
# An input key (any array [N]) that asks ``generate`` for the generator's own float32 output
# rather than pixels. Requests with it never share a batch with those without: the batcher
# merges only requests with the same input names.
TENSORS = "tensors"


class Engines:
    """A verified version's engines, warmed up; what an engine process runs."""

    def __init__(self, manifest: Manifest, generator: Engine, discriminator: Engine | None):
        self.manifest = manifest
        self.device = generator.device
        self.has_discriminator = discriminator is not None
        self._generator = generator
        self._discriminator = discriminator
        lo, hi = manifest.output_range
        self._range = (lo, hi)

    @classmethod
    def load(cls, folder: Path, manifest: Manifest, settings: Settings) -> Engines:
        g = load_engine(folder, manifest, "generator", settings)
        d = (
            load_engine(folder, manifest, "discriminator", settings)
            if has_discriminator(manifest)
            else None
        )
        _warm_up(manifest, g, d)
        return cls(manifest, g, d)

    def generate(self, inputs: Inputs) -> np.ndarray:
        """Pixels uint8 [N, H, W, C] for ``{"seed", ["truncation"], ["label"]}`` or ``{"z"}``;
        with ``TENSORS`` among the inputs, the generator's output float32 [N, C, H, W]."""
        if TENSORS in inputs:
            return self._generator.run({k: v for k, v in inputs.items() if k != TENSORS})
        if "seed" in inputs:
            inputs = _seeded(inputs, self.manifest)
        return imaging.to_uint8(self._generator.run(inputs), self._range)

    def discriminate(self, inputs: Inputs) -> np.ndarray:
        """Logits [N, 1] for ``{"image": [N, C, H, W] in the output range, ["label"]}``."""
        if self._discriminator is None:
            m = self.manifest
            raise RuntimeError(f"{m.name} v{m.version} has no discriminator")
        return self._discriminator.run(inputs)


def has_discriminator(manifest: Manifest) -> bool:
    return any(manifest.artifact("discriminator", kind) for kind in ("onnx", "pt"))


def _seeded(inputs: Inputs, manifest: Manifest) -> Inputs:
    """A batch's inputs with its seeds (and truncation thresholds) drawn into latents ``z``."""
    thresholds = inputs["truncation"].tolist() if "truncation" in inputs else None
    z = latent.latents(
        inputs["seed"].tolist(), manifest.latent.dim, manifest.latent.prior, thresholds
    )
    return {"z": z, "label": inputs["label"]} if "label" in inputs else {"z": z}


def _warm_up(manifest: Manifest, g: Engine, d: Engine | None) -> None:
    """One tiny call each, so a broken graph fails here and not on a user's request."""
    z = np.zeros((1, manifest.latent.dim), dtype=np.float32)
    label = np.zeros(1, dtype=np.int64)
    inputs: Inputs = {"z": z, "label": label} if manifest.conditional else {"z": z}
    try:
        image = g.run(inputs)
        expected = (1, *manifest.image_shape)
        if image.shape != expected:
            raise IntegrityError(f"generator returns {image.shape}, the manifest says {expected}")
        if d is not None:
            feeds = {"image": image, "label": label} if manifest.conditional else {"image": image}
            logit = d.run(feeds)
            if logit.shape != (1, 1):
                raise IntegrityError(f"discriminator returns {logit.shape}, expected (1, 1)")
    except IntegrityError:
        raise
    except Exception as e:  # a graph whose inputs do not match its manifest
        raise IntegrityError(f"{manifest.name} v{manifest.version} fails a test run: {e}") from e
