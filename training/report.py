"""Markdown tables of a repository's figures: what ``python -m training report`` prints and the
README's tables of the committed models hold (tests/app/test_committed_models.py compares them).
"""

from __future__ import annotations

from typing import Any

from core.repository import Repository


def figures_table(repo: Repository) -> list[str]:
    """Each model's serving version beside the real-data reference."""
    lines = [
        "| model | images | FID ↓ | classes covered | KL to uniform ↓ | label accuracy "
        "| Parzen log-likelihood ↑ (± s.e.) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in repo.models():
        version = repo.resolve(name, None)
        m = repo.manifest(name, version).metrics
        if "generated" not in m:
            continue
        conditional = "label_accuracy" in m["generated"]
        for label, figures in (
            (f"{name} v{version}", m["generated"]),
            ("training images", m["real_reference"]),
        ):
            cov = figures["mode_coverage"]
            acc = figures.get("label_accuracy")
            parzen = figures["parzen"]
            lines.append(
                f"| {label} | {figures['samples']} | {figures['fid']:.2f} "
                f"| {cov['classes_covered']}/10 | {cov['kl_to_uniform']:.4f} "
                f"| {f'{acc:.1%}' if conditional and acc is not None else ''} "
                f"| {parzen['mean']:.0f} ± {parzen['std_err']:.0f} (σ={parzen['sigma']:.3f}) |"
            )
    return lines


def usefulness_table(repo: Repository) -> list[str]:
    """Every version's usefulness scores, newest first, then the training images' under the
    same protocol (``cas_real``, ``prdc_real``)."""
    lines = [
        "| model | CAS ↑ | NAS: real subset → with the samples ↑ | precision ↑ "
        "| recall ↑ | density → 1 | coverage ↑ |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in repo.models():
        blocks = [
            (version, repo.manifest(name, version).metrics.get("usefulness"))
            for version in reversed(repo.versions(name))
        ]
        found = [(version, block) for version, block in blocks if block]
        for version, block in found:
            nas = block.get("nas")
            shift = (
                f"{nas['real_only']:.1%} → {nas['with_synthetic']:.1%} ({nas['gain'] * 100:+.1f})"
                if nas
                else ""
            )
            cells = [f"{name} v{version}", _percent(block.get("cas")), shift]
            lines.append(_row(cells + _prdc(block["prdc"])))
        if found:
            real = found[0][1]
            cells = ["training images", _percent(real.get("cas_real")), ""]
            lines.append(_row(cells + _prdc(real["prdc_real"])))
    return lines


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _prdc(figures: dict[str, Any]) -> list[str]:
    return [f"{figures[k]:.3f}" for k in ("precision", "recall", "density", "coverage")]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
