"""app.exports.plan: every image's seed and label, shard by shard."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from app.exports.plan import (
    ExportSpec,
    check_for_model,
    shard_count,
    shard_labels,
    shard_name,
    shard_range,
)
from core.latent import MAX_SEED


def spec(**fields: object) -> ExportSpec:
    return ExportSpec.model_validate(
        {"model": "m", "version": 1, "n": 25, "shard_size": 10, **fields}
    )


def test_shards_cover_the_seed_range_once_in_order() -> None:
    s = spec(seed=100)
    ranges = [shard_range(s, i) for i in range(shard_count(s))]
    assert ranges == [(100, 10), (110, 10), (120, 5)]
    assert [shard_name(s, i) for i in range(3)] == [
        "shard-000000.npz",
        "shard-000001.npz",
        "shard-000002.npz",
    ]


def test_default_labels_are_the_sample_endpoints_seed_mod_classes() -> None:
    s = spec(seed=7)
    labels = np.concatenate([shard_labels(s, 10, i) for i in range(3)])  # type: ignore[misc]
    assert labels.tolist() == [(7 + i) % 10 for i in range(25)]
    assert shard_labels(s, 0, 0) is None  # unconditional


def test_a_fixed_label_labels_every_image() -> None:
    assert shard_labels(spec(label=3), 10, 2).tolist() == [3] * 5  # type: ignore[union-attr]


def test_a_mix_holds_exact_proportions_in_every_shard_in_a_seeded_order() -> None:
    s = spec(n=1000, shard_size=100, label_mix=[1, 0, 3])
    first = shard_labels(s, 3, 0)
    assert first is not None
    assert np.bincount(first, minlength=3).tolist() == [25, 0, 75]
    assert first.tolist() != sorted(first.tolist())  # shuffled
    assert first.tolist() == shard_labels(s, 3, 0).tolist()  # type: ignore[union-attr]
    assert first.tolist() != shard_labels(s, 3, 1).tolist()  # type: ignore[union-attr]
    # Remainders go to the largest fractions: 7 images at 1:1:1 are 3, 2, 2.
    odd = spec(n=7, shard_size=7, label_mix=[1, 1, 1])
    assert sorted(np.bincount(shard_labels(odd, 3, 0)).tolist()) == [2, 2, 3]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"label": 1, "label_mix": [1, 1]},
        {"seed": MAX_SEED, "n": 2},
        {"label_mix": [0, 0]},
        {"label_mix": [1, -1]},
        {"label_mix": [1, float("nan")]},
        {"n": 10**9, "shard_size": 1},
        {"n": 0},
        {"shard_size": 100_001},
        {"format": "zip"},
        {"truncation": 0},
    ],
)
def test_inconsistent_specs_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        spec(**fields)


def test_a_spec_is_checked_against_its_models_classes() -> None:
    assert check_for_model(spec(), 10) is None
    assert check_for_model(spec(), 0) is None
    assert "unconditional" in str(check_for_model(spec(label=1), 0))
    assert "0..9" in str(check_for_model(spec(label=10), 10))
    assert "one weight per class" in str(check_for_model(spec(label_mix=[1, 2]), 10))
