"""Projection benchmark: quality and seconds per image of POST /v1/project on this machine.

    python -m benchmarks.projection [--images 200] [--steps 80] [--restarts 1]

For each committed model, through a real server on loopback (requests of 10 images, as a
client would send them):

1. held-out digits (the seeded validation split neither the GANs nor the judge trained on,
   20 per class by default): seconds per image, mean distance, and how often the project's
   classifier (the judge behind FID) labels the reconstruction as it labels the original,
   for the pixel distance and for the classifier-features distance (which optimises that
   judge's own features, so its agreement is no independent test). Seconds per image (the
   median over requests) come with their ratio to the same server generating one image's
   search rows (steps x restarts x population latents, /v1/sample npy), measured just
   before each request: on a shared machine the ratio holds where the seconds do not;
2. the models' own images (seeds 1,000,000 on, not in the bank): how close their projections
   come, against the nearest of 500 other images the model draws of the same class (the
   label for the conditional model, the judge's class for the other).

The first request builds the version's latent bank (GAN_PROJECT_BANK_SIZE images, once per
loaded version); its time is printed apart and left out of the per-image figures.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image

from app.serving.projection import POPULATION
from benchmarks.serving import Server
from core import imaging
from core.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = ROOT / "training" / "classifier" / "mnist_classifier.onnx"
MODELS = ("mnist-gan", "mnist-cdcgan")
PER_REQUEST = 10


class Judge:
    """The project's classifier (training/classifier.py), through ONNX Runtime."""

    def __init__(self) -> None:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(CLASSIFIER), opts)

    def classes(self, images: np.ndarray) -> np.ndarray:
        x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255
        logits: np.ndarray = self.session.run(["logits"], {"image": x})[0]
        return logits.argmax(1)


@dataclass
class Projected:
    images: np.ndarray  # uint8 [N, H, W, 1], the reconstructions
    distances: np.ndarray  # [N]
    seconds: list[float]  # per image, request by request
    ratios: list[float]  # the same, over the floor measured just before each request

    def timing(self) -> str:
        lo, hi = min(self.ratios), max(self.ratios)
        return (
            f"{statistics.median(self.seconds):.3f} s/image, "
            f"{statistics.median(self.ratios):.2f} [{lo:.2f}-{hi:.2f}] x generating its rows"
        )


def project(
    client: httpx.Client,
    model: str,
    images: np.ndarray,
    floor: Callable[[], float] | None = None,
    **fields: str | int,
) -> Projected:
    """Reconstructions and distances, in requests of 10; before each request, ``floor()``:
    the seconds the server takes to generate one image's search rows, then and there."""
    recon, distances, seconds, ratios = [], [], [], []
    for start in range(0, len(images), PER_REQUEST):
        part = images[start : start + PER_REQUEST]
        below = floor() if floor is not None else math.nan
        began = time.perf_counter()
        r = client.post(
            "/v1/project",
            params={"model": model, **fields},
            content=imaging.encode_npy(part),
            headers={"content-type": "application/x-npy"},
        )
        seconds.append((time.perf_counter() - began) / len(part))
        ratios.append(seconds[-1] / below)
        r.raise_for_status()
        for item in r.json()["results"]:
            png = Image.open(io.BytesIO(base64.b64decode(item["png"])))
            recon.append(np.asarray(png)[..., None])
            distances.append(item["distance"])
    return Projected(np.stack(recon), np.array(distances), seconds, ratios)


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared pixel difference in [0, 1] of every image of a against every image of b."""
    x = a.reshape(len(a), -1).astype(np.float64) / 255
    y = b.reshape(len(b), -1).astype(np.float64) / 255
    return np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2 * x @ y.T, 0) / x.shape[1]


def held_out(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    _, held = load_dataset("builtin:mnist").split(0.1, seed=0)
    rng = np.random.default_rng(0)
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(held.labels == k), per_class, replace=False) for k in range(10)]
    )
    return held.images[idx].transpose(0, 2, 3, 1), held.labels[idx]


def sample(client: httpx.Client, model: str, seeds: range, conditional: bool) -> np.ndarray:
    body: dict[str, object] = {"model": model, "seeds": list(seeds), "format": "npy"}
    if conditional:
        body["labels"] = [s % 10 for s in seeds]
    r = client.post("/v1/sample", json=body)
    r.raise_for_status()
    return np.load(io.BytesIO(r.content))


def generating(client: httpx.Client, model: str, rows: int, conditional: bool) -> float:
    """Seconds the server takes to generate ``rows`` images (npy, 1,024 a request at most:
    GAN_MAX_N's default), the better of two."""
    times = []
    for _ in range(2):
        began = time.perf_counter()
        for start in range(0, rows, 1024):
            sample(client, model, range(start, min(rows, start + 1024)), conditional)
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="held-out digits (10 classes)")
    parser.add_argument("--generated", type=int, default=50, help="the models' own images")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--restarts", type=int, default=1)
    args = parser.parse_args()
    judge = Judge()
    digits, truth = held_out(args.images // 10)
    budget = {"steps": args.steps, "restarts": args.restarts}
    print(f"held-out digits: {len(digits)}; steps {args.steps}, restarts {args.restarts}")
    server = Server()
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            for model in MODELS:
                conditional = client.get(f"/v1/models/{model}").json()["versions"][0]["num_classes"]
                began = time.perf_counter()
                project(client, model, digits[:1], steps=1, restarts=1)
                bank_s = time.perf_counter() - began
                print(f"\n{model}: first request (builds the bank): {bank_s:.1f} s")
                seen = judge.classes(digits)
                rows = args.steps * args.restarts * POPULATION
                floor = functools.partial(generating, client, model, rows, conditional > 0)
                right = float((seen == truth).mean())

                for distance in ("pixel", "features"):
                    out = project(client, model, digits, floor, distance=distance, **budget)
                    agree = float((judge.classes(out.images) == seen).mean())
                    pixel = float(np.diag(mse(digits, out.images)).mean())
                    print(
                        f"  held-out, {distance}: {out.timing()}; mean distance "
                        f"{out.distances.mean():.4f} (pixels {pixel:.4f}); the judge agrees "
                        f"on {agree:.1%} (is right on {right:.1%} of the originals)"
                    )
                own = sample(client, model, range(10**6, 10**6 + args.generated), conditional > 0)
                others = sample(client, model, range(2 * 10**6, 2 * 10**6 + 500), conditional > 0)
                mine = project(client, model, own, floor, **budget)
                d = mine.distances
                own_class = judge.classes(own) if not conditional else np.arange(len(own)) % 10
                other_class = judge.classes(others) if not conditional else np.arange(500) % 10
                between = mse(own, others)
                nearest = np.array(
                    [between[i, other_class == own_class[i]].min() for i in range(len(own))]
                )
                ratio = d / nearest
                print(
                    f"  its own images: {mine.timing()}; mean distance {d.mean():.4f}, to the "
                    f"nearest other image of the class {nearest.mean():.4f}: ratio median "
                    f"{np.median(ratio):.3f}, worst {ratio.max():.3f}"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
