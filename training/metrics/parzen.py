"""Parzen-window log-likelihood estimate of a generator.

Follows Goodfellow et al. 2014, "Generative Adversarial Nets", section 5, which uses the
protocol of Breuleux et al. 2011: fit a Gaussian Parzen window (an isotropic Gaussian of
width sigma on each generated sample) to samples from G, pick sigma by cross-validation on
a validation set, and report the mean log-likelihood of held-out test images with its
standard error. The estimate is known to be poor in high dimensions; it is kept because it
is the number the paper reports. Pure numpy so it runs in any process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

# The grid of the paper's released code: 10 widths from 0.1 to 1 on a log scale.
DEFAULT_SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.logspace(-1, 0, 10))


@dataclass(frozen=True)
class ParzenResult:
    """Mean test log-likelihood (nats per image), its standard error and the chosen width.

    >>> rng = np.random.default_rng(0)
    >>> data = rng.standard_normal((3, 500, 2))
    >>> result = parzen_evaluate(data[0], data[1], data[2], sigmas=[0.1, 0.3, 1.0])
    >>> result.sigma
    0.3
    """

    mean: float
    std_err: float
    sigma: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std_err": self.std_err, "sigma": self.sigma}


def _as_rows(name: str, array: np.ndarray) -> np.ndarray:
    # Image batches [N, C, H, W] are accepted and flattened to [N, C*H*W].
    arr = np.asarray(array, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch [N, D, ...], got shape {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


def _check_sigmas(sigmas: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError("sigmas is empty")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"sigmas must be finite and > 0, got {arr.tolist()}")
    return arr


def _log_likelihoods(
    samples: np.ndarray, x: np.ndarray, sigmas: np.ndarray, batch_size: int
) -> np.ndarray:
    """Log-likelihood of each row of x under each width: [len(sigmas), N]."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    s = _as_rows("samples", samples)  # [M, D]
    q = _as_rows("x", x)  # [N, D]
    if s.shape[1] != q.shape[1]:
        raise ValueError(f"samples have {s.shape[1]} features, x has {q.shape[1]}")
    num_samples, dim = s.shape
    s_sq = np.einsum("md,md->m", s, s)  # [M]
    # log of the Gaussian normaliser and of the mixture weight 1/M, per sigma
    log_norm = -math.log(num_samples) - 0.5 * dim * np.log(2.0 * math.pi * sigmas**2)  # [S]
    out = np.empty((sigmas.size, q.shape[0]), dtype=np.float64)
    for start, sq_dist in _batched_sq_distances(q, s, s_sq, batch_size):
        stop = start + sq_dist.shape[0]
        # One distance matrix serves every sigma, so cross-validation costs one pass.
        for k, sigma in enumerate(sigmas):
            out[k, start:stop] = _logsumexp_rows(sq_dist / (-2.0 * sigma**2)) + log_norm[k]
    return out


def _batched_sq_distances(
    q: np.ndarray, s: np.ndarray, s_sq: np.ndarray, batch_size: int
) -> Iterator[tuple[int, np.ndarray]]:
    # ||a||^2 + ||b||^2 - 2ab keeps memory at [batch, M] instead of [batch, M, D]; rounding
    # can make it slightly negative for near-identical rows, hence the clip.
    for start in range(0, q.shape[0], batch_size):
        batch = q[start : start + batch_size]  # [B, D]
        b_sq = np.einsum("bd,bd->b", batch, batch)  # [B]
        sq_dist = b_sq[:, None] + s_sq[None, :] - 2.0 * (batch @ s.T)  # [B, M]
        yield start, np.maximum(sq_dist, 0.0)


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    # Subtracting the row max keeps exp() in (0, 1], so far points give a finite, very
    # negative log-likelihood instead of log(0) = -inf.
    top = a.max(axis=1)  # [B]
    return top + np.log(np.exp(a - top[:, None]).sum(axis=1))


def parzen_log_likelihood(
    samples: np.ndarray, x: np.ndarray, sigma: float, batch_size: int = 100
) -> np.ndarray:
    """log p(x_i) [N] under a Gaussian Parzen window of width sigma on samples [M, D].

    log p(x_i) = logsumexp_j(-||x_i - s_j||^2 / (2 sigma^2)) - log M - D/2 log(2 pi sigma^2);
    x is processed `batch_size` rows at a time so memory stays O(batch_size * M).
    """
    return _log_likelihoods(samples, x, _check_sigmas([sigma]), batch_size)[0]


def select_sigma(
    samples: np.ndarray,
    validation: np.ndarray,
    sigmas: Sequence[float] | np.ndarray = DEFAULT_SIGMAS,
    batch_size: int = 100,
) -> float:
    """The width in `sigmas` that maximises mean validation log-likelihood (first on ties)."""
    grid = _check_sigmas(sigmas)
    scores = _log_likelihoods(samples, validation, grid, batch_size).mean(axis=1)  # [S]
    return float(grid[int(np.argmax(scores))])


def parzen_evaluate(
    samples: np.ndarray,
    validation: np.ndarray,
    test: np.ndarray,
    sigmas: Sequence[float] | np.ndarray | None = None,
    batch_size: int = 100,
) -> ParzenResult:
    """Choose sigma on `validation`, then report the mean and standard error on `test`."""
    sigma = select_sigma(
        samples, validation, DEFAULT_SIGMAS if sigmas is None else sigmas, batch_size
    )
    ll = parzen_log_likelihood(samples, test, sigma, batch_size)
    # std / sqrt(N) with the population std, as in the paper's released parzen_ll.py.
    return ParzenResult(
        mean=float(ll.mean()), std_err=float(ll.std() / math.sqrt(ll.size)), sigma=sigma
    )
