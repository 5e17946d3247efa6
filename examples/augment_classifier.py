"""Do GAN samples help a classifier that has few real examples?

Trains a small CNN on 500 real digits (50 per class, drawn with a fixed seed from the training
split of the built-in dataset) twice: on them alone, and with synthetic digits streamed from a
running gan-serve through ``gan_client.dataset.GanDataset``. Prints both accuracies on the held-out
split, which neither the GANs nor this classifier ever train on.

    make serve &
    python examples/augment_classifier.py --model mnist-cdcgan --synthetic 5000

Both runs take the same number of gradient steps from the same initial weights, so a gain
comes from the data, not from training longer. Needs the ``train`` extra (torch); runs on a
CPU in a minute or two.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from gan_client.dataset import GanDataset
from torch import Tensor, nn

from core.datasets import Dataset, load_dataset

BATCH = 64
REAL_PER_CLASS = 50


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # A CNN this small gains little from intra-op threads, and on a shared machine OpenMP
    # threads competing for busy cores make it many times slower.
    torch.set_num_threads(args.threads)
    train, held_out = load_dataset("builtin:mnist").split(0.1, 0)
    x_real, y_real = few_per_class(train, REAL_PER_CLASS, seed=0)
    x_test, y_test = to_tensors(held_out.images, held_out.labels)
    x_syn, y_syn = synthetic(args.url, args.model, args.version, args.synthetic, args.seed)
    steps = args.epochs * math.ceil((len(y_real) + len(y_syn)) / BATCH)

    real_only = fit(x_real, y_real, steps)
    augmented = fit(torch.cat([x_real, x_syn]), torch.cat([y_real, y_syn]), steps)
    print(f"held-out digits: {len(y_test)}; gradient steps per run: {steps}")
    print(
        f"real only: {len(y_real)} real digits, accuracy {accuracy(real_only, x_test, y_test):.4f}"
    )
    print(
        f"real + synthetic: {len(y_real)} real + {len(y_syn)} from {args.model}, "
        f"accuracy {accuracy(augmented, x_test, y_test):.4f}"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=os.environ.get("GAN_URL", "http://127.0.0.1:8000"))
    p.add_argument("--model", default="mnist-cdcgan", help="a conditional model of the digits")
    p.add_argument("--version", default=None, help="a version or alias (default: production)")
    p.add_argument("--synthetic", type=int, default=5000, help="synthetic digits to add")
    p.add_argument("--epochs", type=int, default=10, help="passes over real + synthetic")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p


def few_per_class(ds: Dataset, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(ds.labels == c), per_class, replace=False)
            for c in range(ds.num_classes)
        ]
    )
    return to_tensors(ds.images[idx], ds.labels[idx])


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
    # uint8 [N, 1, 28, 28] -> float [0, 1], the range GanDataset yields
    return torch.from_numpy(images).float() / 255, torch.from_numpy(labels).long()


def synthetic(
    url: str, model: str, version: str | None, n: int, seed: int
) -> tuple[Tensor, Tensor]:
    if n == 0:
        return torch.empty(0, 1, 28, 28), torch.empty(0, dtype=torch.long)
    batch = min(n, 500)
    batches = math.ceil(n / batch)
    stream = GanDataset(
        url, model=model, version=version, batch_size=batch, num_batches=batches, seed=seed
    )
    if stream.image_shape != (1, 28, 28) or stream.num_classes != 10:
        raise SystemExit(f"{model} does not draw 28x28 digits of 10 classes")
    images, labels = zip(*stream, strict=True)  # labels cycle through the classes: balanced
    return torch.cat(images)[:n], torch.cat(labels)[:n]


def classifier() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),  # [N, 16, 28, 28]
        nn.ReLU(),
        nn.MaxPool2d(2),  # [N, 16, 14, 14]
        nn.Conv2d(16, 32, 3, padding=1),  # [N, 32, 14, 14]
        nn.ReLU(),
        nn.MaxPool2d(2),  # [N, 32, 7, 7]
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def fit(x: Tensor, y: Tensor, steps: int) -> nn.Module:
    torch.manual_seed(0)  # the same initial weights and batch draws for both runs
    gen = torch.Generator().manual_seed(0)
    model = classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(y), (BATCH,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


if __name__ == "__main__":
    raise SystemExit(main())
