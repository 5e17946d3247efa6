"""Mode coverage from the classifier's predicted-class histogram.

In the spirit of the "stacked MNIST" protocol (Metz et al. 2017, "Unrolled Generative
Adversarial Networks"; Srivastava et al. 2017, "VEEGAN"): classify generated samples with a
pretrained classifier, count the modes (here the ten digits) that receive samples, and
report KL(predicted-class histogram || uniform). A collapsed generator covers few classes
and has a KL near log(num_classes); a perfect one covers all and has a KL near 0.
For conditional models, `label_accuracy` says how often the requested class is the one drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Coverage:
    """Predicted-class histogram of generated samples and what it says about mode collapse.

    >>> cov = mode_coverage(np.array([0, 1, 1, 1]), num_classes=2)
    >>> cov.histogram, cov.classes_covered
    ([0.25, 0.75], 2)
    """

    histogram: list[float]  # share of samples per class; sums to 1
    classes_covered: int  # classes with at least `min_share` of the samples
    kl_to_uniform: float  # KL(histogram || uniform), natural log

    def to_dict(self) -> dict[str, list[float] | int | float]:
        return {
            "histogram": list(self.histogram),
            "classes_covered": self.classes_covered,
            "kl_to_uniform": self.kl_to_uniform,
        }


def _check_labels(name: str, labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    return arr


def mode_coverage(
    predicted: np.ndarray, num_classes: int, min_share: float | None = None
) -> Coverage:
    """Histogram, covered classes and KL to uniform of predicted classes [N].

    A class counts as covered when it gets at least `min_share` of the samples; the default,
    0.1 / num_classes, is a tenth of its fair share, so a handful of stray predictions on a
    collapsed generator does not count as a mode.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if min_share is None:
        min_share = 0.1 / num_classes
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be in [0, 1], got {min_share}")
    pred = _check_labels("predicted", predicted)
    if pred.min() < 0 or pred.max() >= num_classes:
        raise ValueError(
            f"predicted classes must be in [0, {num_classes}), "
            f"got values in [{pred.min()}, {pred.max()}]"
        )
    hist = np.bincount(pred, minlength=num_classes).astype(np.float64) / pred.size
    # 0 * log 0 = 0: empty classes add nothing to KL(p || u) = sum p log(p * K).
    nonzero = hist[hist > 0]
    kl = float(np.sum(nonzero * np.log(nonzero * num_classes)))
    return Coverage(
        histogram=hist.tolist(),
        classes_covered=int(np.count_nonzero(hist >= min_share)),
        kl_to_uniform=max(kl, 0.0),  # rounding can leave -1e-17 for a uniform histogram
    )


def label_accuracy(predicted: np.ndarray, requested: np.ndarray) -> float:
    """Share of samples whose predicted class equals the label they were generated for."""
    pred = _check_labels("predicted", predicted)
    req = _check_labels("requested", requested)
    if pred.shape != req.shape:
        raise ValueError(f"predicted {pred.shape} and requested {req.shape} differ in shape")
    return float(np.mean(pred == req))
