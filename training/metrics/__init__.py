"""GAN evaluation metrics, one module each, each naming the protocol it follows."""

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

__all__ = [
    "DEFAULT_SIGMAS",
    "Coverage",
    "ParzenResult",
    "feature_stats",
    "fid",
    "frechet_distance",
    "label_accuracy",
    "mode_coverage",
    "parzen_evaluate",
    "parzen_log_likelihood",
    "select_sigma",
]
