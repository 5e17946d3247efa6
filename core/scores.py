"""The scores a version's manifest carries: where each sits in its ``metrics`` and which way is
better.

The one owner of these names: training writes the figures (``training/export.py`` at export,
``python -m training score`` for a version already published), the service compares them
(``app/jobs/promotion.py``, a job's ``promote_on``) and lists them (``/v1/models``).

    >>> value({"generated": {"fid": 7.66}}, "fid"), value({}, "cas")
    (7.66, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

ScoreName = Literal[
    "fid",
    "classes_covered",
    "label_accuracy",
    "cas",
    "nas",
    "precision",
    "recall",
    "density",
    "coverage",
]
DEFAULT_PROMOTE_ON: tuple[ScoreName, ...] = ("fid", "cas")


@dataclass(frozen=True)
class Score:
    name: ScoreName
    label: str  # as a promotion reason or a table names it
    path: tuple[str, ...]  # keys into a manifest's metrics
    higher_is_better: bool
    spec: str = ".3f"  # how a reason or a table writes a value
    # Better the closer to this, when set: density is 1 for samples spread as the real images
    # are, and above 1 when they crowd the commonest shapes (Naeem et al. 2020).
    target: float | None = None


SCORES: dict[str, Score] = {
    s.name: s
    for s in (
        Score("fid", "FID", ("generated", "fid"), False, ".2f"),
        Score(
            "classes_covered",
            "classes covered",
            ("generated", "mode_coverage", "classes_covered"),
            True,
            ".0f",
        ),
        Score("label_accuracy", "label accuracy", ("generated", "label_accuracy"), True),
        Score("cas", "CAS", ("usefulness", "cas"), True),
        Score("nas", "NAS gain", ("usefulness", "nas", "gain"), True),
        Score("precision", "precision", ("usefulness", "prdc", "precision"), True),
        Score("recall", "recall", ("usefulness", "prdc", "recall"), True),
        Score("density", "density", ("usefulness", "prdc", "density"), False, target=1.0),
        Score("coverage", "coverage", ("usefulness", "prdc", "coverage"), True),
    )
}
assert tuple(SCORES) == get_args(ScoreName), "ScoreName and SCORES name the same scores"


def value(metrics: dict[str, Any], name: str) -> float | None:
    """A score from a manifest's metrics; None when that version has no such figure."""
    node: Any = metrics
    for key in SCORES[name].path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None


def scores(metrics: dict[str, Any]) -> dict[str, float]:
    """Every score a manifest's metrics carry, by name."""
    found = {name: value(metrics, name) for name in SCORES}
    return {name: v for name, v in found.items() if v is not None}


def no_worse(name: str, new: float, old: float) -> bool:
    """Whether ``new`` is at least as good as ``old`` for this score (a tie is no worse)."""
    score = SCORES[name]
    if score.target is not None:
        return abs(new - score.target) <= abs(old - score.target)
    return new >= old if score.higher_is_better else new <= old
