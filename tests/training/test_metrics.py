from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest

from training.metrics import (
    Coverage,
    ParzenResult,
    feature_stats,
    fid,
    frechet_distance,
    label_accuracy,
    mode_coverage,
    parzen_evaluate,
    parzen_log_likelihood,
    select_sigma,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


# --- FID ------------------------------------------------------------------------------------


def test_feature_stats_is_mean_and_unbiased_covariance() -> None:
    feats = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 4.0]], dtype=np.float32)
    mu, sigma = feature_stats(feats)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, [1.0, 2.0])
    # sum of squared deviations / (N - 1): 4 / 3 and 16 / 3, uncorrelated
    np.testing.assert_allclose(sigma, [[4 / 3, 0.0], [0.0, 16 / 3]])


def test_feature_stats_single_feature_gives_1x1_covariance() -> None:
    _, sigma = feature_stats(np.array([[1.0], [3.0]]))
    assert sigma.shape == (1, 1)
    assert sigma[0, 0] == pytest.approx(2.0)


def test_fid_of_identical_sets_is_zero(rng: np.random.Generator) -> None:
    feats = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8))
    assert fid(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_fid_of_identical_rank_deficient_sets_is_zero(rng: np.random.Generator) -> None:
    # More features than samples: singular covariance, where naive sqrtm goes complex.
    feats = rng.standard_normal((10, 32))
    value = fid(feats, feats)
    assert math.isfinite(value)
    assert value == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_shifted_mean_is_squared_shift() -> None:
    d = np.array([1.0, -2.0, 0.5])
    eye = np.eye(3)
    assert frechet_distance(np.zeros(3), eye, d, eye) == pytest.approx(float(d @ d))


def test_fid_of_shifted_set_is_squared_shift(rng: np.random.Generator) -> None:
    feats = rng.standard_normal((200, 5))
    d = np.array([0.3, 0.0, -1.0, 2.0, 0.1])
    # Same covariance, so only the mean term remains.
    assert fid(feats, feats + d) == pytest.approx(float(d @ d), rel=1e-9)


def test_frechet_distance_diagonal_closed_form() -> None:
    a = np.array([1.0, 4.0, 0.25])
    b = np.array([9.0, 1.0, 0.25])
    expected = float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))  # (1-3)^2 + (2-1)^2 + 0 = 5
    assert expected == pytest.approx(5.0)
    got = frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b))
    assert got == pytest.approx(expected)


def test_frechet_distance_2x2_matches_closed_form_trace_sqrt(rng: np.random.Generator) -> None:
    s1, s2 = _random_spd(rng, 2), _random_spd(rng, 2)
    mu1, mu2 = rng.standard_normal(2), rng.standard_normal(2)
    # For a 2x2 matrix with eigenvalues l1, l2 >= 0: sqrt(l1) + sqrt(l2) =
    # sqrt(l1 + l2 + 2 sqrt(l1 l2)) = sqrt(Tr M + 2 sqrt(det M)).
    prod = s1 @ s2
    tr_sqrt = math.sqrt(np.trace(prod) + 2.0 * math.sqrt(np.linalg.det(prod)))
    expected = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_3x3_matches_eigenvalues_of_product(rng: np.random.Generator) -> None:
    s1, s2 = _random_spd(rng, 3), _random_spd(rng, 3)
    mu1, mu2 = rng.standard_normal(3), rng.standard_normal(3)
    # S1 S2 is not symmetric, but similar to a PSD matrix: its eigenvalues are real, >= 0.
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = float(np.sum(np.sqrt(eig.real)))
    expected = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_is_symmetric(rng: np.random.Generator) -> None:
    a = rng.standard_normal((300, 6))
    b = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6)) + 1.0
    assert fid(a, b) > 1.0
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)


def test_fid_rejects_mismatched_or_too_small_inputs(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="dimensions differ"):
        fid(rng.standard_normal((10, 3)), rng.standard_normal((10, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        fid(rng.standard_normal((1, 3)), rng.standard_normal((10, 3)))
    with pytest.raises(ValueError, match="2-D"):
        feature_stats(np.zeros(5))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


# --- mode coverage --------------------------------------------------------------------------


def test_uniform_predictions_cover_every_class() -> None:
    cov = mode_coverage(np.repeat(np.arange(10), 50), num_classes=10)
    assert cov.classes_covered == 10
    assert cov.kl_to_uniform == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(cov.histogram, [0.1] * 10)


def test_collapsed_predictions_cover_one_class() -> None:
    cov = mode_coverage(np.full(200, 7), num_classes=10)
    assert cov.classes_covered == 1
    assert cov.kl_to_uniform == pytest.approx(math.log(10))
    assert cov.histogram[7] == 1.0 and sum(cov.histogram) == 1.0


def test_default_min_share_is_a_tenth_of_the_fair_share() -> None:
    # 1,000 samples, 10 classes: a class needs >= 1% (10 samples) to count.
    predicted = np.concatenate([np.full(10, 0), np.full(9, 1), np.full(981, 2)])
    cov = mode_coverage(predicted, num_classes=10)
    assert cov.classes_covered == 2
    assert mode_coverage(predicted, num_classes=10, min_share=0.005).classes_covered == 3
    assert mode_coverage(predicted, num_classes=10, min_share=0.5).classes_covered == 1


def test_kl_to_uniform_matches_hand_computation() -> None:
    cov = mode_coverage(np.array([0, 0, 0, 1]), num_classes=3)
    expected = 0.75 * math.log(0.75 * 3) + 0.25 * math.log(0.25 * 3)  # empty class adds 0
    assert cov.kl_to_uniform == pytest.approx(expected)
    assert cov.to_dict() == {
        "histogram": [0.75, 0.25, 0.0],
        "classes_covered": 2,
        "kl_to_uniform": cov.kl_to_uniform,
    }
    assert isinstance(cov, Coverage)


def test_mode_coverage_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        mode_coverage(np.array([0, 10]), num_classes=10)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        mode_coverage(np.array([-1, 3]), num_classes=10)
    with pytest.raises(ValueError, match="1-D"):
        mode_coverage(np.zeros((2, 2), dtype=np.int64), num_classes=10)
    with pytest.raises(ValueError, match="integer"):
        mode_coverage(np.array([0.0, 1.0]), num_classes=10)
    with pytest.raises(ValueError, match="empty"):
        mode_coverage(np.array([], dtype=np.int64), num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        mode_coverage(np.array([0]), num_classes=0)


def test_label_accuracy() -> None:
    assert label_accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 3, 4])) == 1.0
    assert label_accuracy(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])) == 0.5
    assert label_accuracy(np.array([5]), np.array([6])) == 0.0


def test_label_accuracy_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        label_accuracy(np.array([1, 2, 3]), np.array([1, 2]))
    with pytest.raises(ValueError, match="empty"):
        label_accuracy(np.array([], dtype=np.int64), np.array([], dtype=np.int64))


# --- Parzen window --------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2])
def test_parzen_single_sample_is_gaussian_log_density(dim: int) -> None:
    sigma = 0.7
    x = np.array([[0.5, -1.2][:dim]])
    got = parzen_log_likelihood(np.zeros((1, dim)), x, sigma)
    expected = -float(x[0] @ x[0]) / (2 * sigma**2) - dim / 2 * math.log(2 * math.pi * sigma**2)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(expected, rel=1e-12)


def test_parzen_two_samples_is_mixture_log_density() -> None:
    sigma = 0.5
    samples = np.array([[-1.0], [2.0]])
    x = np.array([[0.3]])

    def normal_pdf(v: float, mean: float) -> float:
        return math.exp(-((v - mean) ** 2) / (2 * sigma**2)) / math.sqrt(2 * math.pi * sigma**2)

    expected = math.log(0.5 * normal_pdf(0.3, -1.0) + 0.5 * normal_pdf(0.3, 2.0))
    assert parzen_log_likelihood(samples, x, sigma)[0] == pytest.approx(expected, rel=1e-12)


def test_parzen_is_batch_size_invariant(rng: np.random.Generator) -> None:
    samples = rng.random((300, 16))
    x = rng.random((37, 16))
    reference = parzen_log_likelihood(samples, x, 0.2, batch_size=37)
    for batch_size in (1, 5, 100):
        np.testing.assert_allclose(
            parzen_log_likelihood(samples, x, 0.2, batch_size=batch_size), reference, rtol=1e-12
        )


def test_parzen_flattens_image_batches(rng: np.random.Generator) -> None:
    samples = rng.random((20, 1, 4, 4))
    x = rng.random((3, 1, 4, 4))
    np.testing.assert_allclose(
        parzen_log_likelihood(samples, x, 0.3),
        parzen_log_likelihood(samples.reshape(20, 16), x.reshape(3, 16), 0.3),
    )


def test_parzen_far_points_stay_finite() -> None:
    # exp(-784 / (2 * 0.1^2)) underflows to 0 in float64; the max-subtracted logsumexp must not.
    samples = np.zeros((10, 784))
    x = np.full((2, 784), 1.0)
    ll = parzen_log_likelihood(samples, x, 0.1)
    assert np.all(np.isfinite(ll))
    expected = -784 / (2 * 0.01) - 784 / 2 * math.log(2 * math.pi * 0.01)
    np.testing.assert_allclose(ll, expected, rtol=1e-12)


def test_select_sigma_recovers_the_width_of_a_true_parzen_model(
    rng: np.random.Generator,
) -> None:
    # Data drawn from the Parzen model itself (a Gaussian of width s on each of the generated
    # samples) makes s the maximum-likelihood width, so cross-validation should find it.
    # (For samples drawn from N(0, s^2) instead, the best window is a fraction of s that
    # shrinks as M grows, so s is not the right answer there.)
    s = 0.3
    centres = rng.uniform(-20.0, 20.0, size=(50, 2))
    validation = centres[rng.integers(0, 50, size=2000)] + rng.normal(0.0, s, size=(2000, 2))
    grid = [0.05, 0.1, 0.2, 0.3, 0.45, 0.7, 1.0]
    chosen = select_sigma(centres, validation, grid)
    assert s / 1.5 <= chosen <= s * 1.5


def test_select_sigma_prefers_narrow_windows_for_many_samples(rng: np.random.Generator) -> None:
    # With 1,000 samples of N(0, 0.3^2) the estimate is better with a window well under 0.3:
    # the chosen sigma lies strictly inside the grid, below the data's own scale.
    samples = rng.normal(0.0, 0.3, size=(1000, 1))
    validation = rng.normal(0.0, 0.3, size=(1000, 1))
    grid = np.logspace(-2, 0.5, 11)
    chosen = select_sigma(samples, validation, grid)
    assert grid[0] < chosen < 0.3


def test_parzen_evaluate_reports_mean_and_standard_error(rng: np.random.Generator) -> None:
    samples = rng.random((200, 4))
    validation = rng.random((50, 4))
    test = rng.random((80, 4))
    grid = [0.05, 0.1, 0.2, 0.4]
    result = parzen_evaluate(samples, validation, test, sigmas=grid)
    assert isinstance(result, ParzenResult)
    assert result.sigma == select_sigma(samples, validation, grid)
    ll = parzen_log_likelihood(samples, test, result.sigma)
    assert result.mean == pytest.approx(float(ll.mean()))
    assert result.std_err == pytest.approx(float(ll.std() / math.sqrt(80)))
    assert result.to_dict() == {
        "mean": result.mean,
        "std_err": result.std_err,
        "sigma": result.sigma,
    }


def test_docstring_examples_hold() -> None:
    # import_module: the package re-exports fid() and mode_coverage(), which shadow the
    # submodules of the same name as attributes of training.metrics.
    for name in ("fid", "mode_coverage", "parzen"):
        module = importlib.import_module(f"training.metrics.{name}")
        failed, attempted = doctest.testmod(module, extraglobs={"np": np})
        assert attempted > 0 and failed == 0, module.__name__


def test_parzen_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="features"):
        parzen_log_likelihood(np.zeros((3, 2)), np.zeros((1, 3)), 0.1)
    with pytest.raises(ValueError, match="> 0"):
        parzen_log_likelihood(np.zeros((3, 2)), np.zeros((1, 2)), 0.0)
    with pytest.raises(ValueError, match="empty"):
        select_sigma(np.zeros((3, 2)), np.zeros((1, 2)), [])
    with pytest.raises(ValueError, match="batch_size"):
        parzen_log_likelihood(np.zeros((3, 2)), np.zeros((1, 2)), 0.1, batch_size=0)
