from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from core.latent import (
    MAX_SEED,
    Prior,
    interpolation_steps,
    latent_for_seed,
    latents,
    lerp,
    request_seeds,
    slerp,
    truncate,
    validate_latent,
)

SQRT3 = math.sqrt(3.0)


def test_normal_latent_matches_the_documented_numpy_recipe() -> None:
    expected = np.random.default_rng(1234).standard_normal(64, dtype=np.float32)
    z = latent_for_seed(1234, 64, "normal")
    assert z.dtype == np.float32 and z.shape == (64,)
    np.testing.assert_array_equal(z, expected)


def test_uniform_latent_matches_the_documented_numpy_recipe() -> None:
    expected = np.random.default_rng(7).uniform(-SQRT3, SQRT3, 100).astype(np.float32)
    z = latent_for_seed(7, 100, "uniform")
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z, expected)
    assert np.abs(z).max() <= SQRT3


def test_latent_is_the_same_on_every_call_and_differs_between_seeds() -> None:
    z = latent_for_seed(5, 16, "normal")
    np.testing.assert_array_equal(z, latent_for_seed(5, 16, "normal"))
    assert not np.array_equal(z, latent_for_seed(6, 16, "normal"))


def test_largest_seed_is_accepted() -> None:
    assert latent_for_seed(MAX_SEED, 4, "normal").shape == (4,)


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_out_of_range_seeds_are_refused(seed: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        latent_for_seed(seed, 4, "normal")


def test_unknown_prior_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown prior"):
        latent_for_seed(0, 4, "cauchy")  # type: ignore[arg-type]


def test_seed_gives_consecutive_seeds() -> None:
    assert request_seeds(4, seed=10) == [10, 11, 12, 13]


def test_explicit_seeds_are_returned_as_given() -> None:
    assert request_seeds(3, seeds=[9, 2, 9]) == [9, 2, 9]


def test_explicit_seeds_must_match_n() -> None:
    with pytest.raises(ValueError, match="2 entries but n is 3"):
        request_seeds(3, seeds=[1, 2])


def test_seed_and_seeds_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        request_seeds(1, seed=1, seeds=[1])


def test_seeds_running_past_the_range_are_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        request_seeds(2, seed=MAX_SEED)


def test_fresh_seeds_are_consecutive_and_vary() -> None:
    drawn = [request_seeds(3) for _ in range(5)]
    for seeds in drawn:
        assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]
        assert 0 <= seeds[0] < 2**31
    assert len({seeds[0] for seeds in drawn}) > 1


def test_image_i_of_a_batch_uses_seed_s_plus_i() -> None:
    batch = latents(request_seeds(4, seed=100), 32, "normal")
    assert batch.shape == (4, 32) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[2], latent_for_seed(102, 32, "normal"))


EDGES = [0, 1, 2**32 - 1, 2**32, 2**32 + 1, 2**62, MAX_SEED - 1, MAX_SEED]


def recipe(seeds: list[int], dim: int, prior: Prior) -> np.ndarray:
    """The module docstring's recipe, one default_rng per seed."""
    return np.stack(
        [
            np.random.default_rng(s).standard_normal(dim, dtype=np.float32)
            if prior == "normal"
            else np.random.default_rng(s).uniform(-SQRT3, SQRT3, dim).astype(np.float32)
            for s in seeds
        ]
    )


@pytest.mark.parametrize("prior", ["normal", "uniform"])
def test_a_big_batch_draws_exactly_what_default_rng_draws_per_seed(prior: Prior) -> None:
    # Big batches hash their seeds into PCG64 states all at once (core/latent.py): every seed
    # size (1 or 2 uint32 words), the range ends and random seeds must match numpy exactly.
    random = np.random.default_rng(0).integers(0, MAX_SEED, 2000, dtype=np.int64).tolist()
    seeds = EDGES + random + list(range(100))
    expected = recipe(seeds, 50, prior)
    np.testing.assert_array_equal(latents(seeds, 50, prior), expected)
    truncated = [truncate(z, 0.7, prior, s) for z, s in zip(expected[:80], seeds, strict=False)]
    np.testing.assert_array_equal(latents(seeds[:80], 50, prior, 0.7), np.stack(truncated))


@pytest.mark.parametrize("prior", ["normal", "uniform"])
def test_small_requests_draw_exactly_what_default_rng_draws_per_seed(prior: Prior) -> None:
    # Below 16 seeds the hash runs seed by seed in Python ints: the other implementation.
    random = np.random.default_rng(1).integers(0, MAX_SEED, 300, dtype=np.int64).tolist()
    seeds = EDGES + random
    for start in range(0, len(seeds), 7):
        chunk = seeds[start : start + 7]
        np.testing.assert_array_equal(latents(chunk, 20, prior), recipe(chunk, 20, prior))


def test_threads_drawing_at_once_each_get_their_own_latents() -> None:
    # Each thread reseeds its own generator: one shared generator would mix their draws.
    seeds = list(range(1000, 1400))
    expected = recipe(seeds, 64, "normal")
    results: dict[int, list[np.ndarray]] = {}

    def draw(k: int) -> None:
        results[k] = [latents([s], 64, "normal")[0] for s in seeds]

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        np.testing.assert_array_equal(np.stack(results[k]), expected)


@pytest.mark.parametrize("bad", [-1, 2**63])
def test_a_big_batch_refuses_an_out_of_range_seed(bad: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        latents([*range(100), bad], 8, "normal")


@pytest.mark.parametrize("prior", ["normal", "uniform"])
def test_truncation_bounds_every_component(prior: Prior) -> None:
    batch = latents(range(20), 128, prior, truncation=0.5)
    assert np.abs(batch).max() <= 0.5
    # Components already inside the bound are kept, not redrawn.
    raw = latents(range(20), 128, prior)
    inside = np.abs(raw) <= 0.5
    np.testing.assert_array_equal(batch[inside], raw[inside])
    assert not np.array_equal(batch, raw)


def test_truncation_follows_the_documented_recipe() -> None:
    z = latent_for_seed(3, 50, "normal")
    rng = np.random.default_rng([3, 1])
    expected = z.copy()
    out = np.abs(expected.astype(np.float64)) > 0.7
    while out.any():
        expected[out] = rng.standard_normal(int(out.sum()), dtype=np.float32)
        out = np.abs(expected.astype(np.float64)) > 0.7
    np.testing.assert_array_equal(truncate(z, 0.7, "normal", 3), expected)


def test_truncation_is_deterministic_and_independent_of_the_batch() -> None:
    alone = latents([42], 64, "normal", truncation=0.3)
    in_batch = latents([7, 42, 8], 64, "normal", truncation=0.3)
    np.testing.assert_array_equal(alone[0], in_batch[1])
    np.testing.assert_array_equal(alone, latents([42], 64, "normal", truncation=0.3))


def test_truncation_does_not_modify_its_input() -> None:
    z = latent_for_seed(1, 32, "normal")
    before = z.copy()
    truncate(z, 0.1, "normal", 1)
    np.testing.assert_array_equal(z, before)


def test_wide_truncation_of_a_uniform_latent_is_a_no_op() -> None:
    z = latent_for_seed(11, 256, "uniform")
    np.testing.assert_array_equal(truncate(z, SQRT3, "uniform", 11), z)


@pytest.mark.parametrize("threshold", [0.0, -1.0, float("nan")])
def test_truncation_threshold_must_be_positive(threshold: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        truncate(np.zeros(4, np.float32), threshold, "normal", 0)


def test_interpolation_steps() -> None:
    t = interpolation_steps(5)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t, [0.0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match=">= 2"):
        interpolation_steps(1)


def test_lerp_hits_both_ends_and_the_midpoint() -> None:
    a = latent_for_seed(1, 16, "normal")
    b = latent_for_seed(2, 16, "normal")
    path = lerp(a, b, interpolation_steps(3))
    assert path.shape == (3, 16) and path.dtype == np.float32
    np.testing.assert_array_equal(path[0], a)
    np.testing.assert_array_equal(path[-1], b)
    np.testing.assert_allclose(path[1], (a + b) / 2, rtol=1e-6, atol=1e-6)


def test_slerp_hits_both_ends() -> None:
    a = latent_for_seed(1, 100, "normal")
    b = latent_for_seed(2, 100, "normal")
    path = slerp(a, b, interpolation_steps(9))
    assert path.shape == (9, 100) and path.dtype == np.float32
    np.testing.assert_allclose(path[0], a, rtol=0, atol=1e-6)
    np.testing.assert_allclose(path[-1], b, rtol=0, atol=1e-6)


def test_slerp_keeps_unit_vectors_on_the_unit_sphere() -> None:
    a = latent_for_seed(3, 100, "normal")
    b = latent_for_seed(4, 100, "normal")
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    path = slerp(a, b, interpolation_steps(11))
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, rtol=1e-5)
    # lerp cuts through the ball instead: its midpoint is shorter.
    assert np.linalg.norm(lerp(a, b, interpolation_steps(3))[1]) < 0.9


def test_slerp_of_orthogonal_vectors_follows_the_arc() -> None:
    a = np.array([1.0, 0.0], np.float32)
    b = np.array([0.0, 1.0], np.float32)
    mid = slerp(a, b, np.array([0.5], np.float32))[0]
    np.testing.assert_allclose(mid, [math.sqrt(0.5), math.sqrt(0.5)], rtol=1e-6)


@pytest.mark.parametrize("scale", [2.0, -1.0, 0.0])
def test_slerp_falls_back_to_lerp_when_the_arc_is_undefined(scale: float) -> None:
    a = latent_for_seed(5, 8, "normal")
    b = (a * scale).astype(np.float32)
    t = interpolation_steps(5)
    path = slerp(a, b, t)
    assert np.isfinite(path).all()
    np.testing.assert_array_equal(path, lerp(a, b, t))


def test_interpolation_refuses_mismatched_endpoints() -> None:
    with pytest.raises(ValueError, match="one length"):
        lerp(np.zeros(3, np.float32), np.zeros(4, np.float32), interpolation_steps(2))
    with pytest.raises(ValueError, match="1-D"):
        slerp(np.zeros(3, np.float32), np.ones(3, np.float32), np.zeros((2, 2), np.float32))


def test_validate_latent_accepts_a_list_of_numbers() -> None:
    z = validate_latent([0.5, -1, 2.25], 3)
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z, [0.5, -1.0, 2.25])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.0, 1.0], "list of 3 numbers"),
        ([0.0, 1.0, 2.0, 3.0], "list of 3 numbers"),
        ([[0.0, 1.0, 2.0]], "list of 3 numbers"),
        ([0.0, float("nan"), 1.0], "NaN or infinity"),
        ([0.0, float("inf"), 1.0], "NaN or infinity"),
        ([0.0, -float("inf"), 1.0], "NaN or infinity"),
        ([0.0, 1e39, 1.0], "float32"),
    ],
)
def test_validate_latent_refuses_bad_vectors(values: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_latent(values, 3)
