"""Promotion policies: whether a job's published version becomes ``production``.

``never`` leaves the alias alone; ``always`` moves it; ``if_better`` moves it only when the new
version is no worse than the version in production on every score the job names in
``promote_on`` (``core/scores.py``: default FID and CAS). A score either manifest lacks (CAS of an
unconditional model, figures older than the score) is skipped, and the reason says so.

    >>> promoted, reason = promote(settings, job)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.jobs.store import Job
from app.settings import Settings
from core.repository import DEFAULT_ALIAS, Repository
from core.scores import DEFAULT_PROMOTE_ON, SCORES, no_worse, value


def published_metrics(settings: Settings, job: Job) -> dict[str, Any]:
    assert job.published_version is not None
    manifest = settings.repository().manifest(job.model, job.published_version)
    return manifest.metrics


def promote(settings: Settings, job: Job) -> tuple[bool, str]:
    """Apply the job's promotion policy to its published version."""
    assert job.published_version is not None
    repo = settings.repository()
    new = job.published_version
    if job.promote == "never":
        return False, "policy is never"
    if job.promote == "if_better":
        better, reason = is_better(repo, job.model, new, job.promote_on or DEFAULT_PROMOTE_ON)
        if not better:
            return False, reason
    else:
        reason = "policy is always"
    repo.set_alias(job.model, DEFAULT_ALIAS, new)
    return True, reason


def is_better(repo: Repository, name: str, new: int, promote_on: Sequence[str]) -> tuple[bool, str]:
    """No worse than the version in production on each score of ``promote_on`` that both carry;
    the reason gives each one, new vs production, and the scores skipped."""
    current = repo.aliases(name).get(DEFAULT_ALIAS)
    if current is None:
        return True, "no version was in production"
    old_m, new_m = repo.manifest(name, current).metrics, repo.manifest(name, new).metrics
    compared, skipped, worse = [], [], []
    for score in dict.fromkeys(promote_on):  # in the order asked, once each
        label = SCORES[score].label
        new_v, old_v = value(new_m, score), value(old_m, score)
        if new_v is None or old_v is None:
            where = (
                "either"
                if new_v is None and old_v is None
                else "new"
                if new_v is None
                else "production"
            )
            skipped.append(f"{label} (not in {where})")
            continue
        spec = SCORES[score].spec
        compared.append(f"{label} {new_v:{spec}} vs {old_v:{spec}}")
        if not no_worse(score, new_v, old_v):
            worse.append(label)
    if not compared:
        return False, "metrics missing: cannot compare with production" + _skipped(skipped)
    verdict = ", ".join(compared) + f" in production (v{current})"
    if worse:
        verdict += f": worse on {', '.join(worse)}"
    return not worse, verdict + _skipped(skipped)


def _skipped(skipped: list[str]) -> str:
    return f"; skipped: {', '.join(skipped)}" if skipped else ""
