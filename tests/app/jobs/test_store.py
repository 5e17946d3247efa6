"""app.jobs.store: job folders and records, on a real data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.jobs.store import TERMINAL, JobFolder, JobStore
from core.errors import Conflict, NotFound


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "data")


def test_a_job_folder_spells_out_every_path(tmp_path: Path) -> None:
    folder = JobFolder(tmp_path / "jobs" / "abc")
    assert folder.record == tmp_path / "jobs" / "abc" / "job.json"
    assert folder.config == tmp_path / "jobs" / "abc" / "config.json"
    assert folder.log == tmp_path / "jobs" / "abc" / "log.txt"
    assert folder.lock == tmp_path / "jobs" / "abc" / ".lock"
    assert folder.run.stats == tmp_path / "jobs" / "abc" / "run" / "stats.jsonl"


@pytest.mark.parametrize(
    "job_id", ["١٢٣", "ａｂｃ", "a" * 33, "a" * 300, "../x", "a/b", "", "abc.def", "ABC", "abc\n"]
)
def test_an_id_that_is_not_short_ascii_hex_is_not_found(
    store: JobStore, job_id: str
) -> None:
    with pytest.raises(NotFound):
        store.folder(job_id)
    with pytest.raises(NotFound):
        store.get(job_id)


def test_the_longest_allowed_id_names_a_folder_under_the_store(store: JobStore) -> None:
    assert store.folder("f" * 32).root == store.root / ("f" * 32)


def test_create_writes_a_record_that_get_and_list_read_back(store: JobStore) -> None:
    job = store.create(model="tiny-cgan", preset="cdcgan", overrides={"max_steps": 3})
    assert len(job.id) == 16 and int(job.id, 16) >= 0
    assert job.state == "queued" and job.promote == "if_better"
    on_disk = json.loads(store.folder(job.id).record.read_text())
    assert on_disk["id"] == job.id and on_disk["overrides"] == {"max_steps": 3}
    assert store.get(job.id) == job
    other = store.create(model="tiny-gan", preset="gan", created=job.created + 1)
    assert [j.id for j in store.list()] == [other.id, job.id]  # newest first
    assert store.list(state="running") == []
    with pytest.raises(NotFound):
        store.get("0123456789abcdef")


def test_patch_changes_only_the_fields_given(store: JobStore) -> None:
    job = store.create(model="tiny-cgan", preset="cdcgan")
    patched = store.patch(job.id, worker="w-1", attempts=2)
    assert (patched.worker, patched.attempts, patched.model) == ("w-1", 2, "tiny-cgan")
    assert store.get(job.id) == patched


def test_transition_is_a_compare_and_set_on_the_state(store: JobStore) -> None:
    job = store.create(model="tiny-cgan", preset="cdcgan")
    assert store.transition(job.id, {"running"}, state="succeeded") is None
    assert store.get(job.id).state == "queued"  # not what was expected: left alone
    running = store.transition(job.id, {"queued"}, state="running", worker="w-1")
    assert running is not None and running.state == "running"
    assert store.get(job.id).worker == "w-1"


def test_request_cancel_cancels_a_queued_job_and_flags_a_running_one(store: JobStore) -> None:
    queued = store.create(model="tiny-cgan", preset="cdcgan")
    done = store.request_cancel(queued.id)
    assert done.state == "cancelled" and done.cancel_requested and done.finished is not None
    running = store.create(model="tiny-cgan", preset="cdcgan")
    store.patch(running.id, state="running")
    flagged = store.request_cancel(running.id)
    assert flagged.state == "running" and flagged.cancel_requested
    assert "cancelled" in TERMINAL
    with pytest.raises(Conflict):
        store.request_cancel(queued.id)  # already cancelled


def test_updating_a_job_with_no_folder_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFound):
        store.patch("0123456789abcdef", state="running")


def test_discard_removes_the_folder(store: JobStore) -> None:
    job = store.create(model="tiny-cgan", preset="cdcgan")
    store.discard(job.id)
    assert not store.folder(job.id).root.exists()
    with pytest.raises(NotFound):
        store.get(job.id)
