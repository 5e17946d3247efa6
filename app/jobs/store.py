"""Job records, and each job's folder in the data directory.

    <data_dir>/jobs/<id>/job.json     the record (state, progress, metrics, outcome): files only
    <data_dir>/jobs/<id>/config.json  the validated training config the child runs
    <data_dir>/jobs/<id>/run/         the training run (training.events.RunFiles): checkpoints
    <data_dir>/jobs/<id>/log.txt      the child's output
    <data_dir>/jobs/<id>/export/      an export's shards and manifest (app.exports.manifest)

:class:`JobFolder` is the one place these paths are spelled out.

:class:`JobStore` is the records' interface, with two backends chosen by :func:`open_store`:
:class:`FileJobStore` (embedded: job.json and config.json in the folder) and
``app.jobs.redis_store.RedisJobStore`` (with ``GAN_QUEUE_URL``: records and configs in that
Redis, which every replica reaches with no shared filesystem; a worker writes config.json where
its child reads it). Either way every change is atomic: the file store replaces job.json under
a per-job file lock, the Redis store commits a WATCH/MULTI transaction, so readers on any replica
never see a torn record and two writers never lose each other's update.

A job is a training (kind ``train``) or an export (kind ``export``, ``app.exports``). States:
queued -> running -> succeeded | failed | cancelled (running -> queued when a worker stops or dies
mid-run: the job resumes from its checkpoint, or an export from its last finished shard;
cancelled | failed -> queued when its owner resumes it).
"""

from __future__ import annotations

import fcntl
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.exports.manifest import ExportFiles
from app.exports.plan import ExportSpec
from app.settings import Settings
from core import identifiers
from core.atomic import write_atomic
from core.errors import Conflict, NotFound
from training.events import RunFiles

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
Promote = Literal["never", "if_better", "always"]
Kind = Literal["train", "export"]


class Progress(BaseModel):
    """A training's steps, or an export's images and shards."""

    step: int = 0
    max_steps: int = 0
    epoch: int | None = None
    loss_d: float | None = None
    loss_g: float | None = None
    d_real: float | None = None
    d_fake: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    images: int | None = None
    images_total: int | None = None
    shards: int | None = None
    shards_total: int | None = None


class Job(BaseModel):
    id: str
    kind: Kind = "train"
    model: str
    preset: str | None = None  # training only
    export: ExportSpec | None = None  # exports only
    overrides: dict[str, Any] = Field(default_factory=dict)
    base_version: int | None = None
    dataset: str | None = None
    promote: Promote = "if_better"
    promote_on: list[str] | None = None  # if_better's scores (core/scores.py); None: the default
    state: State = "queued"
    created: float = Field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    worker: str | None = None
    heartbeat: float | None = None
    cancel_requested: bool = False
    progress: Progress = Field(default_factory=Progress)
    metrics: dict[str, Any] = Field(default_factory=dict)
    published_version: int | None = None
    promoted: bool | None = None
    promotion_reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class JobFolder:
    """The paths of one job's folder.

    >>> JobFolder(Path("data/jobs/4be1c0ffee")).run.stats
    PosixPath('data/jobs/4be1c0ffee/run/stats.jsonl')
    """

    root: Path

    @property
    def record(self) -> Path:
        return self.root / "job.json"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def run(self) -> RunFiles:
        return RunFiles(self.root / "run")

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def export(self) -> ExportFiles:
        return ExportFiles(self.root / "export")

    @property
    def lock(self) -> Path:
        return self.root / ".lock"


class JobStore(ABC):
    """Job records, whichever backend holds them; a job's files stay in its folder.

    >>> store = open_store(settings)  # FileJobStore, or RedisJobStore with GAN_QUEUE_URL
    >>> job = store.create(config=cfg.model_dump_json(), model="mnist-cdcgan", preset="cdcgan")
    >>> store.transition(job.id, {"queued"}, state="running").state
    'running'
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, job_id: str) -> JobFolder:
        return JobFolder(self.root / identifiers.job_id(job_id))

    @abstractmethod
    def create(self, *, config: str, **fields: Any) -> Job:
        """A new record, queued, with its validated training config (JSON)."""

    @abstractmethod
    def discard(self, job_id: str) -> None:
        """Remove a record that never reached the queue."""

    @abstractmethod
    def get(self, job_id: str) -> Job:
        """The record; NotFound when there is none."""

    @abstractmethod
    def list(self, state: str | None = None) -> list[Job]:
        """Records, newest first; only those in ``state`` when it is given."""

    @abstractmethod
    def config(self, job_id: str) -> str:
        """The job's training config (JSON), as ``create`` got it."""

    @abstractmethod
    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> Job:
        """Apply ``change`` to the current record atomically; None leaves it alone."""

    def config_file(self, job_id: str) -> Path:
        """The job's config as a file in its folder on this machine, where the child reads it."""
        path = self.folder(job_id).config
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.config(job_id).encode())
        return path

    def patch(self, job_id: str, **fields: Any) -> Job:
        return self.update(job_id, lambda j: j.model_copy(update=fields))

    def transition(self, job_id: str, expected: set[str], **fields: Any) -> Job | None:
        """Compare-and-set: apply ``fields`` only if the state is one of ``expected``."""
        changed: list[Job] = []

        def change(job: Job) -> Job | None:
            if job.state not in expected:
                return None
            changed.append(job.model_copy(update=fields))
            return changed[0]

        self.update(job_id, change)
        return changed[0] if changed else None

    def request_cancel(self, job_id: str) -> Job:
        def change(job: Job) -> Job:
            if job.state in TERMINAL:
                raise Conflict(f"job {job_id} has already {job.state}")
            if job.state == "queued":
                return job.model_copy(
                    update={"state": "cancelled", "finished": time.time(), "cancel_requested": True}
                )
            return job.model_copy(update={"cancel_requested": True})

        return self.update(job_id, change)

    def request_resume(self, job_id: str) -> Job:
        """Put a cancelled or failed job back to queued, as it stood: a training resumes from its
        checkpoint, an export from its last finished shard."""

        def change(job: Job) -> Job:
            if job.state not in ("cancelled", "failed"):
                raise Conflict(
                    f"job {job_id} is {job.state}: only a cancelled or failed job resumes"
                )
            if job.published_version is not None:
                raise Conflict(f"job {job_id} published version {job.published_version} already")
            return job.model_copy(
                update={
                    "state": "queued",
                    "cancel_requested": False,
                    "finished": None,
                    "error": None,
                    "attempts": 0,
                }
            )

        return self.update(job_id, change)


class FileJobStore(JobStore):
    """Records as job.json in each job's folder, under a per-job file lock (one machine, or a
    POSIX filesystem every replica shares)."""

    def create(self, *, config: str, **fields: Any) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], **fields)
        folder = self.folder(job.id)
        folder.root.mkdir()
        write_atomic(folder.config, config.encode())
        self._write(job)
        return job

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id).root, ignore_errors=True)

    def get(self, job_id: str) -> Job:
        try:
            return Job.model_validate_json(self.folder(job_id).record.read_bytes())
        except FileNotFoundError as e:
            raise NotFound(f"no job {job_id!r}") from e

    def list(self, state: str | None = None) -> list[Job]:
        jobs = []
        for folder in self.root.iterdir():
            try:
                job = self.get(folder.name)
            except (NotFound, ValueError):
                continue
            if state is None or job.state == state:
                jobs.append(job)
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def config(self, job_id: str) -> str:
        try:
            return self.folder(job_id).config.read_text()
        except FileNotFoundError as e:
            raise NotFound(f"job {job_id!r} has no config") from e

    def config_file(self, job_id: str) -> Path:
        path = self.folder(job_id).config
        if not path.is_file():
            raise NotFound(f"job {job_id!r} has no config")
        return path

    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> Job:
        with self._lock(job_id):
            job = self.get(job_id)
            new = change(job.model_copy(deep=True))
            if new is None:
                return job
            self._write(new)
            return new

    def _write(self, job: Job) -> None:
        write_atomic(self.folder(job.id).record, job.model_dump_json(indent=2).encode())

    @contextmanager
    def _lock(self, job_id: str) -> Iterator[None]:
        try:
            lock = open(self.folder(job_id).lock, "a")
        except FileNotFoundError as e:  # no such job folder: a 404, not a 500
            raise NotFound(f"no job {job_id!r}") from e
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def open_store(settings: Settings) -> JobStore:
    """Records where the queue is: in its Redis when scaled out, else files in data_dir."""
    if settings.queue_url:
        from app.jobs.redis_store import RedisJobStore  # the [redis] extra, needed then only

        return RedisJobStore(settings.data_dir, settings.queue_url)
    return FileJobStore(settings.data_dir)
