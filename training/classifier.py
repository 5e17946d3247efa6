"""The project's own MNIST classifier: the feature extractor behind FID and mode coverage.

A small CNN trained on the training split of the built-in digits only, so the held-out split
stays unseen by both the GANs and their judge. Exported to ONNX with two outputs: ``logits``
[N, 10] and ``features`` [N, 128] (the penultimate layer, FID's feature space).

    python -m training classifier --out training/classifier
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.datasets import load_dataset
from training.config import DatasetConfig

ONNX_NAME = "mnist_classifier.onnx"
INFO_NAME = "mnist_classifier.json"
DEFAULT_DIR = Path(__file__).parent / "classifier"
FEATURES = 128


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),  # [N, 32, 28, 28]
            nn.ReLU(),
            nn.MaxPool2d(2),  # [N, 32, 14, 14]
            nn.Conv2d(32, 64, 3, padding=1),  # [N, 64, 14, 14]
            nn.ReLU(),
            nn.MaxPool2d(2),  # [N, 64, 7, 7]
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(64 * 7 * 7, FEATURES),  # [N, 128]
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(image)
        return self.head(features), features


def _shift(x: Tensor, gen: torch.Generator) -> Tensor:
    # Random translations of up to 2 pixels: cheap augmentation that matters on 4,500 digits.
    padded = F.pad(x, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()
    return padded[:, :, dy : dy + 28, dx : dx + 28]


def train_classifier(out_dir: Path, *, epochs: int = 12, seed: int = 0) -> dict[str, Any]:
    split = DatasetConfig()
    train, held_out = load_dataset(split.source).split(split.val_fraction, split.split_seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x = torch.from_numpy(train.images).float() / 255
    y = torch.from_numpy(train.labels)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(64):
            logits, _ = model(_shift(x[idx], gen))
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(held_out.images).float() / 255)
    accuracy = float((logits.argmax(1).numpy() == held_out.labels).mean())

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(4, 1, 28, 28),),
        out_dir / ONNX_NAME,
        input_names=["image"],
        output_names=["logits", "features"],
        dynamic_shapes={"image": {0: torch.export.Dim("batch")}},
        dynamo=True,
        external_data=False,
    )
    info = {
        "held_out_accuracy": accuracy,
        "held_out_size": len(held_out.labels),
        "train_size": len(train.labels),
        "dataset": split.model_dump(),
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "input": "image float32 [N, 1, 28, 28] in [0, 1]",
        "outputs": {"logits": "[N, 10]", "features": f"[N, {FEATURES}]"},
        "command": f"python -m training classifier --out {out_dir}",
    }
    (out_dir / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_info(folder: Path = DEFAULT_DIR) -> dict[str, Any]:
    return dict(json.loads((folder / INFO_NAME).read_text()))
