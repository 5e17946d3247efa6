"""Classification accuracy score (CAS) and naive augmentation score (NAS) of labelled samples.

Both follow Ravuri & Vinyals 2019, "Classification Accuracy Score for Conditional Generative
Models": CAS trains a classifier on generated images only, labelled with the classes they were
generated for, and reports its accuracy on real held-out images, beside the same classifier
trained on the real training images (the bar, ``cas_real``); NAS trains it on real images with
the generated ones added. Here NAS starts from a small seeded share of the training split,
where added images can still help, and reports the accuracy without and with them.

The classifier is deliberately small (:class:`SmallCNN`, about 5,000 weights, a few seconds of
one CPU thread) and trained for a fixed number of steps from a fixed seed, so every set of
images gets the same budget and the figures compare versions with each other; it is not the
project's judge (``training/classifier.py``), which was trained on the real split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# uint8 images [N, 1, 28, 28] and their int64 class labels [N].
Labelled = tuple[np.ndarray, np.ndarray]


class SmallCNN(nn.Sequential):
    """LeNet-sized: two 5x5 convolutions (8, 16 channels) with max-pooling, then a linear layer."""

    DESCRIPTION = "conv 5x5 x8, max-pool, conv 5x5 x16, max-pool, linear 256->10"

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 8, 5),  # [N, 8, 24, 24]
            nn.ReLU(),
            nn.MaxPool2d(2),  # [N, 8, 12, 12]
            nn.Conv2d(8, 16, 5),  # [N, 16, 8, 8]
            nn.ReLU(),
            nn.MaxPool2d(2),  # [N, 16, 4, 4]
            nn.Flatten(),  # [N, 256]
            nn.Linear(256, 10),
        )


@dataclass(frozen=True)
class Protocol:
    """How each classifier is trained: Adam, minibatches drawn with replacement."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"network": SmallCNN.DESCRIPTION, "optimizer": "adam, cosine to 0", **asdict(self)}


def _tensor(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).float() / 255


def accuracy(train: Labelled, test: Labelled, protocol: Protocol) -> float:
    """Accuracy on ``test`` of a :class:`SmallCNN` trained on ``train`` under ``protocol``."""
    (x_np, y_np), (tx_np, ty_np) = train, test
    if x_np.shape[1:] != (1, 28, 28) or tx_np.shape[1:] != (1, 28, 28):
        raise ValueError(f"images must be [N, 1, 28, 28], got {x_np.shape} and {tx_np.shape}")
    if len(x_np) != len(y_np) or len(x_np) == 0:
        raise ValueError(f"{len(x_np)} training images for {len(y_np)} labels")
    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's draws stay as they were
        torch.manual_seed(protocol.seed)
        net = SmallCNN()
    draws = torch.Generator().manual_seed(protocol.seed)
    opt = torch.optim.Adam(net.parameters(), lr=protocol.lr)
    # Annealed to 0: the last step's weights are then a settled answer, not one noisy step.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, protocol.steps)
    x, y = _tensor(x_np), torch.from_numpy(y_np.astype(np.int64))
    for _ in range(protocol.steps):
        idx = torch.randint(0, len(y), (protocol.batch_size,), generator=draws)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        predicted = torch.cat([net(b).argmax(1) for b in _tensor(tx_np).split(1000)]).numpy()
    return float(np.mean(predicted == ty_np))


def cas(
    synthetic: Labelled, real_train: Labelled, held_out: Labelled, protocol: Protocol
) -> dict[str, float]:
    """``cas``: trained on the synthetic images; ``cas_real``: on the real training images."""
    return {
        "cas": accuracy(synthetic, held_out, protocol),
        "cas_real": accuracy(real_train, held_out, protocol),
    }


def real_subset(real_train: Labelled, fraction: float, seed: int) -> Labelled:
    """A seeded random ``fraction`` of the real training images (at least one)."""
    images, labels = real_train
    count = max(1, round(fraction * len(labels)))
    keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:count])
    return images[keep], labels[keep]


def nas(
    synthetic: Labelled, subset: Labelled, held_out: Labelled, protocol: Protocol
) -> dict[str, float]:
    """Accuracy trained on a real ``subset`` alone and with every synthetic image added."""
    real_only = accuracy(subset, held_out, protocol)
    mixed = (
        np.concatenate([subset[0], synthetic[0]]),
        np.concatenate([subset[1], synthetic[1]]),
    )
    with_synthetic = accuracy(mixed, held_out, protocol)
    return {
        "real_only": real_only,
        "with_synthetic": with_synthetic,
        "gain": with_synthetic - real_only,
    }
