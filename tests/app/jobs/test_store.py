"""app.jobs.store and app.jobs.redis_store: job records on both backends, against a real data
directory and a real Redis."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.exports.plan import ExportSpec
from app.jobs.redis_store import RedisJobStore
from app.jobs.store import TERMINAL, FileJobStore, Job, JobFolder, JobStore, open_store
from core.errors import Conflict, NotFound
from tests.app.helpers import private_redis
from tests.conftest import app_settings

CONFIG = json.dumps({"max_steps": 3})
REDIS_DB = 13


@pytest.fixture(params=["files", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "files":
        yield FileJobStore(tmp_path / "data")
        return
    redis_store = RedisJobStore(tmp_path / "data", private_redis(REDIS_DB))
    yield redis_store
    redis_store.redis.flushdb()
    redis_store.redis.close()


def _twin(store: JobStore) -> JobStore:
    """A second store over the same records, as another replica opens it."""
    if isinstance(store, RedisJobStore):
        kwargs = store.redis.connection_pool.connection_kwargs
        url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"
        return RedisJobStore(store.root.parent, url)
    return FileJobStore(store.root.parent)


def test_a_job_folder_spells_out_every_path(tmp_path: Path) -> None:
    folder = JobFolder(tmp_path / "jobs" / "abc")
    assert folder.record == tmp_path / "jobs" / "abc" / "job.json"
    assert folder.config == tmp_path / "jobs" / "abc" / "config.json"
    assert folder.log == tmp_path / "jobs" / "abc" / "log.txt"
    assert folder.lock == tmp_path / "jobs" / "abc" / ".lock"
    assert folder.run.stats == tmp_path / "jobs" / "abc" / "run" / "stats.jsonl"


def test_records_go_to_redis_when_the_queue_is_there(tmp_path: Path) -> None:
    assert type(open_store(app_settings(tmp_path / "models"))) is FileJobStore
    url = private_redis(REDIS_DB)
    store = open_store(app_settings(tmp_path / "models", queue_url=url))
    assert isinstance(store, RedisJobStore)
    store.redis.close()


@pytest.mark.parametrize(
    "job_id", ["١٢٣", "ａｂｃ", "a" * 33, "a" * 300, "../x", "a/b", "", "abc.def", "ABC", "abc\n"]
)
def test_an_id_that_is_not_short_ascii_hex_is_not_found(store: JobStore, job_id: str) -> None:
    with pytest.raises(NotFound):
        store.folder(job_id)
    with pytest.raises(NotFound):
        store.get(job_id)


def test_the_longest_allowed_id_names_a_folder_under_the_store(store: JobStore) -> None:
    assert store.folder("f" * 32).root == store.root / ("f" * 32)


def test_create_writes_a_record_that_get_and_list_read_back(store: JobStore) -> None:
    job = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan", overrides={"a": 3})
    assert len(job.id) == 16 and int(job.id, 16) >= 0
    assert job.state == "queued" and job.promote == "if_better"
    assert store.get(job.id) == job and store.config(job.id) == CONFIG
    assert _twin(store).get(job.id) == job  # what another replica reads
    other = store.create(config=CONFIG, model="tiny-gan", preset="gan", created=job.created + 1)
    assert [j.id for j in store.list()] == [other.id, job.id]  # newest first
    assert [j.id for j in store.list(state="queued")] == [other.id, job.id]
    assert store.list(state="running") == []
    with pytest.raises(NotFound):
        store.get("0123456789abcdef")
    with pytest.raises(NotFound):
        store.config("0123456789abcdef")


def test_the_file_store_keeps_the_record_and_config_in_the_folder(tmp_path: Path) -> None:
    store = FileJobStore(tmp_path / "data")
    job = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
    folder = store.folder(job.id)
    assert json.loads(folder.record.read_text())["id"] == job.id
    assert store.config_file(job.id) == folder.config and folder.config.read_text() == CONFIG


def test_the_redis_store_needs_no_files_until_a_worker_runs_the_job(tmp_path: Path) -> None:
    url = private_redis(REDIS_DB)
    store = RedisJobStore(tmp_path / "api", url)
    worker = RedisJobStore(tmp_path / "worker", url)  # another machine's disk, the same Redis
    try:
        job = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
        assert not store.folder(job.id).root.exists()  # the api replica wrote no files
        path = worker.config_file(job.id)
        assert path == tmp_path / "worker" / "jobs" / job.id / "config.json"
        assert path.read_text() == CONFIG
    finally:
        store.redis.flushdb()
        store.redis.close()
        worker.redis.close()


def test_patch_changes_only_the_fields_given(store: JobStore) -> None:
    job = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
    patched = store.patch(job.id, worker="w-1", attempts=2)
    assert (patched.worker, patched.attempts, patched.model) == ("w-1", 2, "tiny-cgan")
    assert store.get(job.id) == patched


def test_transition_is_a_compare_and_set_on_the_state(store: JobStore) -> None:
    job = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
    assert store.transition(job.id, {"running"}, state="succeeded") is None
    assert store.get(job.id).state == "queued"  # not what was expected: left alone
    running = store.transition(job.id, {"queued"}, state="running", worker="w-1")
    assert running is not None and running.state == "running"
    assert store.get(job.id).worker == "w-1"
    assert [j.id for j in store.list("running")] == [job.id] and store.list("queued") == []


def test_concurrent_updates_from_two_replicas_lose_nothing(store: JobStore) -> None:
    job = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
    replicas = [store, _twin(store)]

    def bump(replica: JobStore) -> None:
        for _ in range(50):
            replica.update(job.id, lambda j: j.model_copy(update={"attempts": j.attempts + 1}))

    threads = [threading.Thread(target=bump, args=(r,)) for r in replicas for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(job.id).attempts == 200


def test_only_one_of_two_racing_transitions_wins(store: JobStore) -> None:
    job = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
    won: list[Job | None] = []
    barrier = threading.Barrier(8)

    def claim(replica: JobStore, worker: str) -> None:
        barrier.wait()
        won.append(replica.transition(job.id, {"queued"}, state="running", worker=worker))

    threads = [
        threading.Thread(target=claim, args=(r, f"w-{i}"))
        for i, r in enumerate([store, _twin(store)] * 4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [j for j in won if j is not None]
    assert len(winners) == 1 and store.get(job.id).worker == winners[0].worker


def test_request_cancel_cancels_a_queued_job_and_flags_a_running_one(store: JobStore) -> None:
    queued = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
    done = store.request_cancel(queued.id)
    assert done.state == "cancelled" and done.cancel_requested and done.finished is not None
    assert [j.id for j in store.list("cancelled")] == [queued.id]
    running = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
    store.patch(running.id, state="running")
    flagged = store.request_cancel(running.id)
    assert flagged.state == "running" and flagged.cancel_requested
    assert "cancelled" in TERMINAL
    with pytest.raises(Conflict):
        store.request_cancel(queued.id)  # already cancelled


def test_request_resume_requeues_a_cancelled_or_failed_job_only(store: JobStore) -> None:
    spec = ExportSpec(model="tiny-cgan", version=1, n=10)
    job = store.create(config=spec.model_dump_json(), kind="export", model="tiny-cgan", export=spec)
    with pytest.raises(Conflict, match="queued"):
        store.request_resume(job.id)
    store.request_cancel(job.id)
    resumed = store.request_resume(job.id)
    assert resumed.state == "queued" and not resumed.cancel_requested and resumed.finished is None
    assert [j.id for j in store.list("queued")] == [job.id] and store.list("cancelled") == []
    assert _twin(store).get(job.id).export == spec  # the spec survives either backend
    store.patch(job.id, state="failed", error="disk full", attempts=3)
    again = store.request_resume(job.id)
    assert again.state == "queued" and again.error is None and again.attempts == 0
    store.patch(job.id, state="succeeded")
    with pytest.raises(Conflict, match="succeeded"):
        store.request_resume(job.id)
    trained = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
    store.patch(trained.id, state="cancelled", published_version=2)
    with pytest.raises(Conflict, match="published version 2"):
        store.request_resume(trained.id)


def test_updating_a_job_with_no_folder_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFound):
        store.patch("0123456789abcdef", state="running")


def test_discard_removes_the_record_and_the_folder(store: JobStore) -> None:
    job = store.create(config=CONFIG, model="tiny-cgan", preset="cdcgan")
    store.config_file(job.id)  # a folder, as a worker makes one
    store.discard(job.id)
    assert not store.folder(job.id).root.exists()
    with pytest.raises(NotFound):
        store.get(job.id)
    assert store.list() == [] and store.list("queued") == []
