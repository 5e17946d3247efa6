"""Precision, recall, density and coverage of generated features against real ones (PRDC).

Precision and recall follow Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
for Assessing Generative Models": each set's manifold is the union of balls around its points,
of radius the distance to the point's k-th nearest neighbour in its own set; precision is the
share of generated points inside the real manifold (fidelity), recall the share of real points
inside the generated one (diversity). Density and coverage follow Naeem et al. 2020, "Reliable
Fidelity and Diversity Metrics for Generative Models": density counts how many real balls hold
each generated point (divided by k, so about 1 when both sets come from one distribution,
above 1 when samples crowd the real modes), coverage is the share of real points whose ball
holds at least one generated point. The comparisons are strict (``<``), as in the authors'
released code, and k = 5 is their recommendation.

Recall and coverage grow with the number of generated points, so :func:`prdc_by_chunks` scores
generated sets the size of the real one and averages. Exact pairwise distances in numpy: the
sets here are a few thousand points at most.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

NEAREST_K = 5


@dataclass(frozen=True)
class PRDC:
    """The four figures, each in [0, 1] except density (in [0, N/k]).

    >>> rng = np.random.default_rng(0)
    >>> real = rng.standard_normal((200, 8))
    >>> prdc(real, real).precision, prdc(real, real + 100).coverage
    (1.0, 0.0)
    """

    precision: float
    recall: float
    density: float
    coverage: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [N, M] between rows of a [N, D] and b [M, D], in float64."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.clip(sq, 0.0, None))  # rounding can leave -1e-12 for a point and itself


def _radii(points: np.ndarray, k: int) -> np.ndarray:
    """Distance [N] from each point to its k-th nearest neighbour, itself excluded."""
    # Index k of the sorted row: index 0 is the point itself, at distance 0.
    return np.partition(_distances(points, points), k, axis=1)[:, k]


def _checked(name: str, features: np.ndarray, k: int) -> np.ndarray:
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {feats.shape}")
    if feats.shape[0] <= k:
        raise ValueError(f"{name} needs more than k={k} rows, got {feats.shape[0]}")
    return feats


def prdc(real: np.ndarray, fake: np.ndarray, k: int = NEAREST_K) -> PRDC:
    """PRDC of generated features fake [M, D] against real features [N, D]."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    real, fake = _checked("real", real, k), _checked("fake", fake, k)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} and {fake.shape[1]}")
    real_radii, fake_radii = _radii(real, k), _radii(fake, k)
    between = _distances(real, fake)  # [N, M]
    in_real_balls = between < real_radii[:, None]  # [N, M]: fake j inside real i's ball
    return PRDC(
        precision=float(in_real_balls.any(axis=0).mean()),
        recall=float((between < fake_radii[None, :]).any(axis=1).mean()),
        density=float(in_real_balls.sum(axis=0).mean() / k),
        coverage=float(in_real_balls.any(axis=1).mean()),
    )


def prdc_by_chunks(
    real: np.ndarray, fake: np.ndarray, k: int = NEAREST_K, seed: int = 0
) -> tuple[PRDC, int]:
    """The mean PRDC over disjoint random chunks of ``fake`` as large as ``real`` (all of
    ``fake`` when it is smaller), and the number of chunks."""
    size = len(real)
    chunks = max(len(fake) // size, 1)
    # Shuffled first: a set in class order (the training split, labels cycling through the
    # classes) would otherwise give chunks of a few classes each.
    order = np.random.default_rng(seed).permutation(len(fake))
    parts = [prdc(real, fake[order[i * size : (i + 1) * size]], k) for i in range(chunks)]
    mean = {key: float(np.mean([asdict(p)[key] for p in parts])) for key in asdict(parts[0])}
    return PRDC(**mean), chunks
