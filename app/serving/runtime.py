"""A loaded version's engines, in the server process: seeds in, pixels out; images in, logits out.

The batchers call a runtime from their threads, one call per role at a time; ONNX Runtime and
torch let go of the GIL while they compute. Engines once ran in a child process per version;
measured against that (README, Engine placement), in-process engines serve big requests as
fast on a CPU and 1.8x faster on a GPU, cost 6 MB per loaded version where a child cost 17 MB
(and on a GPU a CUDA context each), and lose about a sixth of n=1 requests/s on 2 CPUs. So
they run here, and what a process boundary gave is replaced this way:

- a hung engine call: its callers are answered 503 at ``GAN_REQUEST_TIMEOUT_S`` (the batcher's
  timeout), and ``/readyz`` turns 503 naming the stuck engine for as long as the call runs, so
  a load balancer stops sending to the replica and the orchestrator restarts it;
- a crash inside a runtime (a segfault) ends the server process, which the orchestrator (the
  compose restart policy, a Kubernetes Deployment) starts again; the model repository is on
  disk, so nothing is lost but the requests in flight.

    >>> runtime = Runtime.load(folder, manifest, settings)   # loads, warms up, or raises
    >>> pixels = runtime.generate({"seed": np.array([7, 8])})  # uint8 [2, H, W, C]
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from app.serving.engine import Engine, load_engine
from app.settings import Settings
from core import imaging, latent
from core.errors import IntegrityError
from core.repository import Manifest

log = logging.getLogger(__name__)
Inputs = dict[str, np.ndarray]


class Runtime:
    """A verified version's generator and (when it has one) discriminator, warmed up."""

    def __init__(self, manifest: Manifest, generator: Engine, discriminator: Engine | None):
        self.manifest = manifest
        self.device = generator.device
        self.has_discriminator = discriminator is not None
        self._generator = generator
        self._discriminator = discriminator
        lo, hi = manifest.output_range
        self._range = (lo, hi)

    @classmethod
    def load(cls, folder: Path, manifest: Manifest, settings: Settings) -> Runtime:
        g = load_engine(folder, manifest, "generator", settings)
        d = load_engine(folder, manifest, "discriminator", settings) if _has_d(manifest) else None
        _warm_up(manifest, g, d)
        return cls(manifest, g, d)

    def generate(self, inputs: Inputs) -> np.ndarray:
        """Pixels uint8 [N, H, W, C] for ``{"seed", ["truncation"], ["label"]}`` or ``{"z"}``."""
        if "seed" in inputs:
            inputs = _seeded(inputs, self.manifest)
        return imaging.to_uint8(self._generator.run(inputs), self._range)

    def discriminate(self, inputs: Inputs) -> np.ndarray:
        """Logits [N, 1] for ``{"image": [N, C, H, W] in the output range, ["label"]}``."""
        if self._discriminator is None:
            m = self.manifest
            raise RuntimeError(f"{m.name} v{m.version} has no discriminator")
        return self._discriminator.run(inputs)


def _has_d(manifest: Manifest) -> bool:
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
