"""Fréchet distance between two sets of features (FID).

Follows Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium": fit a Gaussian to each feature set and report

    ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

Here the features are the penultimate activations of the project's own MNIST classifier
rather than Inception-v3's, so the numbers compare models of this project with each other,
not with FIDs published for other networks. Pure numpy so it runs in any process.
"""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] (float64) of features [N, D]."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D], got shape {feats.shape}")
    if feats.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows for a covariance, got {feats.shape[0]}")
    mu = feats.mean(axis=0)
    # atleast_2d: np.cov returns a 0-d array when D == 1.
    sigma = np.atleast_2d(np.cov(feats, rowvar=False))
    return mu, sigma


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    # Covariances are PSD in theory; rounding can leave tiny negative eigenvalues.
    eigvals, eigvecs = np.linalg.eigh(matrix)
    root = np.sqrt(np.clip(eigvals, 0.0, None))
    return (eigvecs * root) @ eigvecs.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), clipped at 0."""
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,):
        raise ValueError(f"means must be 1-D of equal length, got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            f"covariances must be [{dim}, {dim}], got {sigma1.shape} and {sigma2.shape}"
        )
    # Tr sqrt(S1 S2) = Tr sqrt(sqrt(S1) S2 sqrt(S1)): the latter is symmetric PSD, so eigh
    # applies and no complex-valued sqrtm of a non-symmetric product is needed (which is
    # what makes scipy.linalg.sqrtm-based FID unstable for near-singular covariances).
    root1 = _sqrtm_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    inner = (inner + inner.T) / 2.0  # remove rounding asymmetry before eigvalsh
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh(inner), 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets [N, D] and [M, D] (same D).

    >>> rng = np.random.default_rng(0)
    >>> a = rng.standard_normal((1000, 4))
    >>> round(fid(a, a), 6)
    0.0
    """
    mu_a, sigma_a = feature_stats(features_a)
    mu_b, sigma_b = feature_stats(features_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dimensions differ: {mu_a.shape[0]} and {mu_b.shape[0]}")
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
