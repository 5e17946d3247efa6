"""core.scores: where each score sits in a manifest's metrics, and which way is better."""

from __future__ import annotations

import doctest
from typing import get_args

import core.scores
from core.scores import DEFAULT_PROMOTE_ON, SCORES, ScoreName, no_worse, scores, value

METRICS = {
    "generated": {"fid": 7.5, "mode_coverage": {"classes_covered": 10}, "label_accuracy": 0.99},
    "usefulness": {
        "cas": 0.95,
        "nas": {"real_only": 0.9, "with_synthetic": 0.93, "gain": 0.03},
        "prdc": {"precision": 0.9, "recall": 0.8, "density": 1.1, "coverage": 0.95},
    },
}


def test_every_score_is_read_from_its_place() -> None:
    assert scores(METRICS) == {
        "fid": 7.5,
        "classes_covered": 10.0,
        "label_accuracy": 0.99,
        "cas": 0.95,
        "nas": 0.03,
        "precision": 0.9,
        "recall": 0.8,
        "density": 1.1,
        "coverage": 0.95,
    }
    assert set(get_args(ScoreName)) == set(SCORES) >= set(DEFAULT_PROMOTE_ON)


def test_a_missing_or_malformed_figure_is_none() -> None:
    assert scores({}) == {}
    assert value({"usefulness": {"prdc": {}}}, "precision") is None
    assert value({"usefulness": "skipped"}, "cas") is None
    assert value({"generated": {"fid": None}}, "fid") is None


def test_fid_is_better_lower_density_nearer_one_the_rest_higher_a_tie_no_worse() -> None:
    assert no_worse("fid", 7.0, 7.5) and not no_worse("fid", 8.0, 7.5)
    for name in set(SCORES) - {"fid", "density"}:
        assert no_worse(name, 0.9, 0.8) and not no_worse(name, 0.7, 0.8), name
        assert no_worse(name, 0.8, 0.8)
    assert no_worse("fid", 7.5, 7.5)
    # Density above 1 is samples crowding the commonest shapes: mnist-cdcgan v1's 1.235 is worse.
    assert no_worse("density", 1.013, 1.235) and not no_worse("density", 1.235, 1.013)
    assert no_worse("density", 0.95, 0.9) and not no_worse("density", 1.2, 0.9)


def test_docstring_examples_hold() -> None:
    failed, attempted = doctest.testmod(core.scores)
    assert attempted > 0 and failed == 0
