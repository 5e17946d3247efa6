"""Promotion policies: whether a job's published version becomes ``production``.

``never`` leaves the alias alone; ``always`` moves it; ``if_better`` moves it only when the new
version's FID is no worse and it covers no fewer classes than the version in production.

    >>> promoted, reason = promote(settings, job)
"""

from __future__ import annotations

from typing import Any

from app.jobs.store import Job
from app.settings import Settings
from core.repository import DEFAULT_ALIAS, Repository


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
        better, reason = is_better(repo, job.model, new)
        if not better:
            return False, reason
    else:
        reason = "policy is always"
    repo.set_alias(job.model, DEFAULT_ALIAS, new)
    return True, reason


def is_better(repo: Repository, name: str, new: int) -> tuple[bool, str]:
    """No worse FID and no fewer classes covered than the version in production."""
    current = repo.aliases(name).get(DEFAULT_ALIAS)
    if current is None:
        return True, "no version was in production"
    old_m = repo.manifest(name, current).metrics.get("generated")
    new_m = repo.manifest(name, new).metrics.get("generated")
    if not old_m or not new_m:
        return False, "metrics missing: cannot compare with production"
    fid_ok = new_m["fid"] <= old_m["fid"]
    cov_ok = new_m["mode_coverage"]["classes_covered"] >= old_m["mode_coverage"]["classes_covered"]
    verdict = (
        f"FID {new_m['fid']:.2f} vs {old_m['fid']:.2f} in production (v{current}); classes "
        f"covered {new_m['mode_coverage']['classes_covered']} vs "
        f"{old_m['mode_coverage']['classes_covered']}"
    )
    return fid_ok and cov_ok, verdict
