from __future__ import annotations

import json
from pathlib import Path

from training import events
from training.events import EXIT_STOPPED, EventType, RunFiles


def test_an_event_round_trips_through_its_line() -> None:
    event = {"event": EventType.PUBLISHED, "name": "mnist-gan", "version": 5}
    line = events.encode(event)
    assert json.loads(line) == {"event": "published", "name": "mnist-gan", "version": 5}
    assert events.decode(line) == {"event": "published", "name": "mnist-gan", "version": 5}
    assert events.decode(line.encode()) == events.decode(line)


def test_other_output_is_not_an_event() -> None:
    for line in (
        "UserWarning: something",
        "[1, 2]",
        '{"event": "no-such-event"}',
        '{"step": 3}',
        "",
        b"\xff\xfe",
    ):
        assert events.decode(line) is None


def test_progress_events_are_the_ones_that_carry_step_and_max_steps() -> None:
    assert events.PROGRESS_EVENTS == {"start", "progress", "stopped", "completed"}
    assert EventType.EVALUATION not in events.PROGRESS_EVENTS


def test_the_stopped_exit_code_is_neither_success_nor_a_signal() -> None:
    assert EXIT_STOPPED not in (0, 1, 2) and EXIT_STOPPED < 128


def test_run_files_are_inside_the_run_directory(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)
    paths = [files.config, files.stats, files.samples, files.sample_history]
    assert all(p.parent == tmp_path for p in paths)
    assert len({p.name for p in paths}) == 4
