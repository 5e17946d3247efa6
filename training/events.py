"""The job protocol between a training process and whoever runs it (the service's job runner).

A training run speaks in three ways, all defined here and imported by both sides:

- **events**, one JSON object per line on stdout and in the run's ``stats.jsonl``, each with an
  ``"event"`` key naming its :class:`EventType`;
- **exit codes**: 0 finished (and published, with ``--out``), :data:`EXIT_STOPPED` stopped by a
  signal at a step boundary with its checkpoint written and nothing published, anything else
  failed;
- **the run directory**, whose files the runner and the API read (:class:`RunFiles`).

Pure standard library: the service imports it without torch.

    >>> print(encode({"event": EventType.PUBLISHED, "name": "mnist-gan", "version": 5}))
    {"event": "published", "name": "mnist-gan", "version": 5}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

EXIT_STOPPED = 3  # stopped by a signal, checkpoint written, nothing published

Event = dict[str, Any]


class EventType(StrEnum):
    START = "start"  # step, max_steps: before the first step (also on a resume)
    PROGRESS = "progress"  # step, epoch, losses, D(x), D(G(z)), images/s, ETA
    EVALUATION = "evaluation"  # step, metrics
    STOPPED = "stopped"  # step: a stop request was honoured, checkpoint written
    COMPLETED = "completed"  # step: max_steps reached
    PUBLISHED = "published"  # name, version: the run was exported into the repository


# Events that move a job's progress (step and max_steps at least).
PROGRESS_EVENTS = frozenset(
    {EventType.START, EventType.PROGRESS, EventType.STOPPED, EventType.COMPLETED}
)


def encode(event: Event) -> str:
    """One event as the line written to stdout and ``stats.jsonl`` (no newline)."""
    return json.dumps(event)


def decode(line: str | bytes) -> Event | None:
    """The event a line holds, or None for any other output (warnings, tracebacks)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") not in EventType.__members__.values():
        return None
    return event


@dataclass(frozen=True)
class RunFiles:
    """The files of one run directory.

    >>> RunFiles(Path("runs/my-gan")).stats
    PosixPath('runs/my-gan/stats.jsonl')
    """

    root: Path

    @property
    def config(self) -> Path:
        """The validated config, written before the first step."""
        return self.root / "config.json"

    @property
    def stats(self) -> Path:
        """Every event, one JSON line each, appended as the run goes."""
        return self.root / "stats.jsonl"

    @property
    def samples(self) -> Path:
        """The latest evaluation's samples grid, replaced atomically."""
        return self.root / "samples.png"

    @property
    def sample_history(self) -> Path:
        """One grid per evaluation: ``step-0001000.png``."""
        return self.root / "samples"
