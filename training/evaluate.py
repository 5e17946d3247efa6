"""Evaluate generated images against the held-out split with the project's own classifier.

Figures (each metric's protocol is in its module under ``training/metrics``):

- ``fid``: Fréchet distance between classifier features of the samples and the held-out set;
- ``mode_coverage``: predicted-class histogram, classes covered, KL to uniform;
- ``label_accuracy``: conditional models only, share classified as the requested class;
- ``parzen``: Gaussian Parzen-window log-likelihood of the held-out images under the samples
  (Goodfellow et al. 2014, section 5), sigma chosen on a validation slice of the training split.

``reference()`` computes the same figures for the training images themselves: the bar a
generator is measured against.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from core.datasets import Dataset, load_dataset
from training import metrics
from training.classifier import DEFAULT_DIR, ONNX_NAME, load_info
from training.config import DatasetConfig

PARZEN_VALIDATION = 500


class Evaluator:
    """Scores uint8 image batches [N, C, H, W] of a dataset's image shape.

    >>> ev = Evaluator(DatasetConfig())
    >>> ev.evaluate(images_u8, requested_labels=None)["fid"]
    """

    def __init__(self, dataset: DatasetConfig, classifier_dir: Path = DEFAULT_DIR) -> None:
        self.train, self.held_out = load_dataset(dataset.source).split(
            dataset.val_fraction, dataset.split_seed
        )
        if self.train.image_shape != (1, 28, 28) or self.train.num_classes != 10:
            raise ValueError("the evaluation classifier scores 28x28 grayscale digits only")
        self.classifier_info = load_info(classifier_dir)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(classifier_dir / ONNX_NAME), opts, providers=["CPUExecutionProvider"]
        )
        # Parzen's sigma is cross-validated on training images that are not the "samples"
        # of the real-data reference, so the reference is not scored on its own points.
        order = np.random.default_rng(0).permutation(len(self.train.labels))
        self.parzen_validation = _flat(self.train.images[order[:PARZEN_VALIDATION]])
        self.parzen_reference = _flat(self.train.images[order[PARZEN_VALIDATION:]])

    def classify(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features [N, 128], predicted class [N]) for uint8 images [N, 1, 28, 28]."""
        feats, preds = [], []
        for start in range(0, len(images), 1000):
            x = images[start : start + 1000].astype(np.float32) / 255
            logits, features = self.session.run(["logits", "features"], {"image": x})
            feats.append(features)
            preds.append(logits.argmax(1))
        return np.concatenate(feats), np.concatenate(preds)

    @cached_property
    def held_out_features(self) -> np.ndarray:
        return self.classify(self.held_out.images)[0]

    @cached_property
    def train_features(self) -> np.ndarray:
        return self.classify(self.train.images)[0]

    def evaluate(
        self,
        images: np.ndarray,
        requested_labels: np.ndarray | None,
        *,
        parzen: bool = True,
        train_fid: bool = False,
    ) -> dict[str, Any]:
        """Figures against the held-out split; ``train_fid`` adds ``fid_train``, the FID
        against the training split, which may choose between checkpoints without leaking."""
        features, predicted = self.classify(images)
        out: dict[str, Any] = {
            "samples": len(images),
            "held_out": len(self.held_out.labels),
            "fid": metrics.fid(features, self.held_out_features),
            "mode_coverage": metrics.mode_coverage(predicted, 10).to_dict(),
        }
        if train_fid:
            out["fid_train"] = metrics.fid(features, self.train_features)
        if requested_labels is not None:
            out["label_accuracy"] = metrics.label_accuracy(predicted, requested_labels)
        if parzen:
            out["parzen"] = metrics.parzen_evaluate(
                _flat(images), self.parzen_validation, _flat(self.held_out.images)
            ).to_dict()
        return out

    def reference(self) -> dict[str, Any]:
        """The same figures for the real training images (Parzen over those not used for sigma)."""
        train = self.train
        out = self.evaluate(train.images, train.labels, parzen=False)
        out["parzen"] = metrics.parzen_evaluate(
            self.parzen_reference, self.parzen_validation, _flat(self.held_out.images)
        ).to_dict()
        out["parzen"]["samples"] = len(self.parzen_reference)
        return out


def _flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float64) / 255


def for_dataset(dataset: Dataset | DatasetConfig) -> Evaluator | None:
    """An evaluator when the classifier fits the data (28x28 digits), else None."""
    cfg = dataset if isinstance(dataset, DatasetConfig) else DatasetConfig(source=dataset.name)
    try:
        return Evaluator(cfg)
    except ValueError:
        return None
