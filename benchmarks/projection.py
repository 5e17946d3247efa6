"""Projection benchmark: quality and seconds per image of POST /v1/project on this machine.

    python -m benchmarks.projection [--images 100] [--steps 60] [--restarts 2]

For each committed model, through a real server on loopback (requests of 10 images, as a
client would send them):

1. held-out digits (the seeded validation split neither the GANs nor the judge trained on,
   10 per class by default): seconds per image, mean distance, and how often the project's
   classifier (the judge behind FID) labels the reconstruction as it labels the original,
   for the pixel distance and for the classifier-features distance;
2. the models' own images (seeds 1,000,000 on, not in the bank): how close their projections
   come, against the nearest of 500 other images the model draws of the same class (the
   label for the conditional model, the judge's class for the other).

The first request builds the version's latent bank (GAN_PROJECT_BANK_SIZE images, once per
loaded version); its time is printed apart and left out of the per-image figures.
"""

from __future__ import annotations

import argparse
import base64
import io
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image

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


def project(client: httpx.Client, model: str, images: np.ndarray, **fields: object) -> tuple:
    """(reconstructions uint8 [N, H, W, 1], distances [N], labels, seconds) in requests of 10."""
    recon, distances, labels, seconds = [], [], [], 0.0
    for start in range(0, len(images), PER_REQUEST):
        part = images[start : start + PER_REQUEST]
        began = time.perf_counter()
        r = client.post(
            "/v1/project",
            params={"model": model, **fields},
            content=imaging.encode_npy(part),
            headers={"content-type": "application/x-npy"},
        )
        seconds += time.perf_counter() - began
        r.raise_for_status()
        for item in r.json()["results"]:
            png = Image.open(io.BytesIO(base64.b64decode(item["png"])))
            recon.append(np.asarray(png)[..., None])
            distances.append(item["distance"])
            labels.append(item["label"])
    return np.stack(recon), np.array(distances), labels, seconds


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="held-out digits (10 classes)")
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
                print(
                    f"\n{model}: first request (builds the bank): {time.perf_counter() - began:.1f} s"
                )
                seen = judge.classes(digits)
                for distance in ("pixel", "features"):
                    recon, d, _, seconds = project(
                        client, model, digits, distance=distance, **budget
                    )
                    agree = float((judge.classes(recon) == seen).mean())
                    pixel = float(np.diag(mse(digits, recon)).mean())
                    print(
                        f"  held-out, {distance:8s}: {seconds / len(digits):.3f} s/image, "
                        f"mean distance {d.mean():.4f} (pixel {pixel:.4f}), judge agrees "
                        f"{agree:.1%} (judge right on the originals {(seen == truth).mean():.1%})"
                    )
                own = sample(client, model, range(10**6, 10**6 + args.generated), conditional > 0)
                others = sample(client, model, range(2 * 10**6, 2 * 10**6 + 500), conditional > 0)
                _, d, _, seconds = project(client, model, own, **budget)
                own_class = judge.classes(own) if not conditional else np.arange(len(own)) % 10
                other_class = judge.classes(others) if not conditional else np.arange(500) % 10
                between = mse(own, others)
                nearest = np.array(
                    [between[i, other_class == own_class[i]].min() for i in range(len(own))]
                )
                ratio = d / nearest
                print(
                    f"  its own images: {seconds / len(own):.3f} s/image, mean distance "
                    f"{d.mean():.4f}; nearest other image of the class {nearest.mean():.4f}; "
                    f"ratio median {np.median(ratio):.3f}, worst {ratio.max():.3f}"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
