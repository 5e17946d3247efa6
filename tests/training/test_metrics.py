from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest

from core.datasets import load_dataset
from training.metrics import (
    PRDC,
    Coverage,
    ParzenResult,
    feature_stats,
    fid,
    frechet_distance,
    label_accuracy,
    mode_coverage,
    parzen_evaluate,
    parzen_log_likelihood,
    prdc,
    prdc_by_chunks,
    select_sigma,
)
from training.metrics.cas import Labelled, Protocol, SmallCNN, accuracy, cas, nas, real_subset


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
    for name in ("fid", "mode_coverage", "parzen", "prdc"):
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


# --- precision, recall, density, coverage -----------------------------------------------------


def test_prdc_of_identical_sets_is_one_on_every_count(rng: np.random.Generator) -> None:
    feats = rng.standard_normal((300, 16))
    # Density: each point lies in its own ball and in those of the k - 1 points nearer to
    # another point than that point's k-th neighbour: N * k in all, over k * N.
    assert prdc(feats, feats) == PRDC(1.0, 1.0, pytest.approx(1.0), 1.0)


def test_prdc_of_far_disjoint_sets_is_zero(rng: np.random.Generator) -> None:
    real = rng.standard_normal((200, 8))
    assert prdc(real, rng.standard_normal((300, 8)) + 100.0) == PRDC(0.0, 0.0, 0.0, 0.0)


def test_prdc_matches_a_hand_computed_example() -> None:
    """k=1 on a line. Real radii: 0 -> 1, 1 -> 1, 3 -> 2; fake radii: 0.5 -> 2.4, 2.9 -> 2.4,
    10 -> 7.1. Precision: 0.5 and 2.9 lie in real balls, 10 in none. Recall: every real point
    lies in a fake ball (the outlier's is wide). Density: 0.5 in two balls, 2.9 in one, 10 in
    none: 3 / (1 * 3). Coverage: every real ball holds a fake point."""
    real = np.array([[0.0], [1.0], [3.0]])
    fake = np.array([[0.5], [2.9], [10.0]])
    result = prdc(real, fake, k=1)
    assert result.precision == pytest.approx(2 / 3)
    assert (result.recall, result.density, result.coverage) == (1.0, 1.0, 1.0)


def test_samples_on_half_the_modes_lose_recall_and_coverage_not_precision(
    rng: np.random.Generator,
) -> None:
    centres = rng.standard_normal((10, 8)) * 20
    real = centres[np.arange(500) % 10] + rng.standard_normal((500, 8))
    fake = centres[np.arange(500) % 5] + rng.standard_normal((500, 8))  # modes 0-4 only
    result = prdc(real, fake)
    assert result.precision > 0.9 and result.density > 0.9
    assert 0.4 < result.recall < 0.6 and 0.4 < result.coverage < 0.6


def test_prdc_by_chunks_scores_sets_the_size_of_the_real_one(rng: np.random.Generator) -> None:
    centres = rng.standard_normal((10, 8)) * 20
    real = centres[np.arange(200) % 10] + rng.standard_normal((200, 8))
    # Sorted by class, as the training split is: a chunk taken in order would hold 2 classes.
    fake = centres[np.sort(np.arange(1000) % 10)] + rng.standard_normal((1000, 8))
    result, chunks = prdc_by_chunks(real, fake)
    assert chunks == 5
    assert result.coverage > 0.9 and result.recall > 0.9
    small = fake[rng.permutation(1000)[:150]]
    assert prdc_by_chunks(real, small) == (prdc(real, small), 1)


def test_prdc_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        prdc(np.zeros(10), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="more than k=5 rows"):
        prdc(np.zeros((5, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="dimensions differ"):
        prdc(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="k must be"):
        prdc(np.zeros((10, 2)), np.zeros((10, 2)), k=0)


# --- classification accuracy score, naive augmentation score ----------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[Labelled, Labelled]:
    """The training and held-out splits of the built-in digits (4,500 and 500)."""
    train, held_out = load_dataset("builtin:mnist").split(0.1, 0)
    return (train.images, train.labels), (held_out.images, held_out.labels)


QUICK = Protocol(steps=150)  # about half a second a classifier; the export default is 1,000


def test_real_digits_posing_as_samples_score_close_to_the_real_bar(
    digits: tuple[Labelled, Labelled],
) -> None:
    (images, labels), held_out = digits
    some = np.random.default_rng(0).permutation(len(labels))[:2000]
    scores = cas((images[some], labels[some]), (images, labels), held_out, QUICK)
    assert scores["cas_real"] > 0.85
    assert abs(scores["cas"] - scores["cas_real"]) < 0.05, scores


def test_samples_of_the_wrong_class_score_near_chance(digits: tuple[Labelled, Labelled]) -> None:
    (images, labels), held_out = digits
    wrong = (labels + 1 + np.random.default_rng(0).integers(0, 9, len(labels))) % 10
    assert accuracy((images, wrong), held_out, QUICK) < 0.2


def test_a_classifier_is_seeded_and_its_protocol_recorded(
    digits: tuple[Labelled, Labelled],
) -> None:
    train, held_out = digits
    small = Protocol(steps=20)
    assert accuracy(train, held_out, small) == accuracy(train, held_out, small)
    assert small.to_dict() == {
        "network": SmallCNN.DESCRIPTION,
        "optimizer": "adam, cosine to 0",
        "steps": 20,
        "batch_size": 64,
        "lr": 0.002,
        "seed": 0,
    }


def test_good_samples_added_to_a_small_real_subset_help(digits: tuple[Labelled, Labelled]) -> None:
    (images, labels), held_out = digits
    order = np.random.default_rng(0).permutation(len(labels))
    pool, extra = order[:2500], order[2500:]  # real digits posing as samples: not in the subset
    subset = real_subset((images[pool], labels[pool]), 0.04, seed=0)
    assert len(subset[1]) == 100
    scores = nas((images[extra], labels[extra]), subset, held_out, QUICK)
    assert scores["with_synthetic"] > scores["real_only"] + 0.05, scores
    assert scores["gain"] == pytest.approx(scores["with_synthetic"] - scores["real_only"])


def test_real_subset_is_a_seeded_share_of_the_split(digits: tuple[Labelled, Labelled]) -> None:
    train, _ = digits
    a, b = real_subset(train, 0.1, seed=0), real_subset(train, 0.1, seed=1)
    assert len(a[1]) == len(b[1]) == 450
    np.testing.assert_array_equal(a[0], real_subset(train, 0.1, seed=0)[0])
    assert not np.array_equal(a[1], b[1])


def test_accuracy_refuses_images_of_another_shape(digits: tuple[Labelled, Labelled]) -> None:
    train, held_out = digits
    with pytest.raises(ValueError, match=r"\[N, 1, 28, 28\]"):
        accuracy((train[0][:, :, :14], train[1]), held_out, QUICK)
