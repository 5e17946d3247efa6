"""Usefulness scores of a version's samples, as its manifest's ``metrics.usefulness`` records them.

- ``prdc``: precision, recall, density and coverage (``training/metrics/prdc.py``) of the
  samples' classifier features against the held-out split's; ``prdc_real``: the same for the
  training images, the bar;
- ``cas`` and ``cas_real``, conditional models only: a small classifier trained on the samples
  (labelled with the classes asked for) or on the training images, tested on the held-out
  split (``training/metrics/cas.py``);
- ``nas``, conditional models only: that classifier trained on a small real share of the
  training split, without and with the samples added, and the gain.

``protocol`` says how they were made (counts, seeds, the classifier and its budget), so a
manifest answers for its own figures. Computed at export (``training/export.py``) and by
``python -m training score`` for a version already published.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from training.config import UsefulnessConfig
from training.evaluate import Evaluator
from training.metrics.cas import Protocol, cas, nas, real_subset
from training.metrics.prdc import prdc_by_chunks

UNCONDITIONAL = (
    "cas, cas_real and nas are absent: an unconditional model's images carry no labels to "
    "train a classifier on"
)


def usefulness(
    evaluator: Evaluator,
    images: np.ndarray,
    labels: np.ndarray | None,
    cfg: UsefulnessConfig,
    *,
    source: str,
) -> dict[str, Any]:
    """The usefulness block for uint8 samples [N, 1, 28, 28], ``labels`` [N] the classes they
    were generated for (None for an unconditional model); ``source`` names where they came from
    for the protocol."""
    start = time.perf_counter()
    held_out = evaluator.held_out_features  # [500, 128]
    fake, chunks = prdc_by_chunks(held_out, evaluator.classify(images)[0], cfg.k, cfg.seed)
    real, real_chunks = prdc_by_chunks(held_out, evaluator.train_features, cfg.k, cfg.seed)
    out: dict[str, Any] = {"prdc": fake.to_dict(), "prdc_real": real.to_dict()}
    protocol: dict[str, Any] = {
        "samples": len(images),
        "images": source,
        "held_out": len(held_out),
        "prdc": (
            f"k={cfg.k} on the evaluation classifier's features: the mean over {chunks} disjoint "
            f"random sets (seed {cfg.seed}) of {min(len(held_out), len(images))} samples "
            f"against the held-out split (prdc_real: {real_chunks} sets of the training images)"
        ),
    }
    if labels is None:
        protocol["classifier"] = UNCONDITIONAL
    else:
        train = (evaluator.train.images, evaluator.train.labels)
        test = (evaluator.held_out.images, evaluator.held_out.labels)
        synthetic = (images, labels)
        budget = Protocol(
            steps=cfg.classifier_steps, batch_size=cfg.classifier_batch, seed=cfg.seed
        )
        subset = real_subset(train, cfg.nas_fraction, cfg.seed)
        out.update(cas(synthetic, train, test, budget))
        out["nas"] = nas(synthetic, subset, test, budget)
        protocol["classifier"] = {**budget.to_dict(), "torch_threads": torch.get_num_threads()}
        protocol["cas"] = (
            f"trained on the {len(images)} samples; cas_real on the {len(train[1])} training images"
        )
        protocol["nas"] = (
            f"trained on {len(subset[1])} training images ({cfg.nas_fraction:g} of the split, "
            f"seed {cfg.seed}), then on those and the {len(images)} samples"
        )
    out["protocol"] = protocol
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out
