"""core.identifiers: the one rule for every identifier that becomes a path."""

from __future__ import annotations

import pytest

from core import identifiers
from core.errors import NotFound

HOSTILE = [
    "",
    "a" * 33,  # past 32 bytes
    "f" * 10_000,  # past NAME_MAX once it is a path component
    "١٢٣",  # Arabic-Indic digits: str.isdigit and str.isalnum say yes
    "ａｂｃ",  # fullwidth letters: 9 bytes in UTF-8 for 3 characters
    "abc\n",  # "$" matches before a final newline
    "ABC",
    "../x",
    "a\x00b",
    "\ud800",  # a lone surrogate: no UTF-8 encoding at all
]


@pytest.mark.parametrize("value", HOSTILE)
def test_ids_are_short_ascii_hex_or_not_found(value: str) -> None:
    assert not identifiers.is_id(value)
    with pytest.raises(NotFound) as job:
        identifiers.job_id(value)
    assert job.value.field == "job_id" and len(job.value.detail) < 80
    with pytest.raises(NotFound) as dataset:
        identifiers.dataset_id(value)
    assert dataset.value.field == "dataset" and len(dataset.value.detail) < 80


def test_real_ids_pass_whole() -> None:
    assert identifiers.job_id("4be1c0ffee4be1c0") == "4be1c0ffee4be1c0"
    assert identifiers.dataset_id("0" * 32) == "0" * 32


@pytest.mark.parametrize("value", ["ｍnist", "mnist\n", "a" * 65, "-gan", "Gan", "é"])
def test_names_are_ascii_and_at_most_64_bytes(value: str) -> None:
    assert not identifiers.is_name(value)


def test_a_name_at_the_bound_passes() -> None:
    assert identifiers.is_name("a" * 64) and len(("a" * 64).encode()) == 64


def test_a_refused_name_or_alias_is_not_echoed_whole() -> None:
    from core.errors import InvalidInput
    from core.repository import check_alias, check_name

    for check in (check_name, check_alias):
        with pytest.raises(InvalidInput) as refused:
            check("ｍ" * 5000)
        assert "..." in refused.value.detail and len(refused.value.detail) < 200
