"""GAN evaluation metrics, one module each, each naming the protocol it follows.

Re-exported here: the numpy ones. ``cas`` trains small torch classifiers and is imported by its
own name (``training.metrics.cas``).
"""

from __future__ import annotations

from training.metrics.fid import feature_stats, fid, frechet_distance
from training.metrics.mode_coverage import Coverage, label_accuracy, mode_coverage
from training.metrics.parzen import (
    DEFAULT_SIGMAS,
    ParzenResult,
    parzen_evaluate,
    parzen_log_likelihood,
    select_sigma,
)
from training.metrics.prdc import PRDC, prdc, prdc_by_chunks

__all__ = [
    "DEFAULT_SIGMAS",
    "PRDC",
    "Coverage",
    "ParzenResult",
    "feature_stats",
    "fid",
    "frechet_distance",
    "label_accuracy",
    "mode_coverage",
    "parzen_evaluate",
    "parzen_log_likelihood",
    "prdc",
    "prdc_by_chunks",
    "select_sigma",
]
