"""Job records: one folder per job in the data directory that service and workers share.

    <data_dir>/jobs/<id>/job.json     the record (state, progress, metrics, outcome)
    <data_dir>/jobs/<id>/config.json  the validated training config the child runs
    <data_dir>/jobs/<id>/run/         the training run (training.events.RunFiles)
    <data_dir>/jobs/<id>/log.txt      the child's output

:class:`JobFolder` is the one place these paths are spelled out.

Every write replaces job.json atomically under a per-job file lock, so readers on any replica
never see a torn record and two writers never lose each other's update.

States: queued -> running -> succeeded | failed | cancelled (running -> queued when a worker
stops or dies mid-run: the job resumes from its checkpoint).
"""

from __future__ import annotations

import fcntl
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from core import identifiers
from core.atomic import write_atomic
from core.errors import Conflict, NotFound
from training.events import RunFiles

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
Promote = Literal["never", "if_better", "always"]


class Progress(BaseModel):
    step: int = 0
    max_steps: int = 0
    epoch: int | None = None
    loss_d: float | None = None
    loss_g: float | None = None
    d_real: float | None = None
    d_fake: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None


class Job(BaseModel):
    id: str
    model: str
    preset: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    base_version: int | None = None
    dataset: str | None = None
    promote: Promote = "if_better"
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
    def lock(self) -> Path:
        return self.root / ".lock"


class JobStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, job_id: str) -> JobFolder:
        return JobFolder(self.root / identifiers.job_id(job_id))

    def create(self, **fields: Any) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], **fields)
        self.folder(job.id).root.mkdir()
        self._write(job)
        return job

    def discard(self, job_id: str) -> None:
        """Remove a record that never reached the queue."""
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

    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> Job:
        """Apply ``change`` to the current record under the job's lock; None leaves it alone."""
        with self._lock(job_id):
            job = self.get(job_id)
            new = change(job.model_copy(deep=True))
            if new is None:
                return job
            self._write(new)
            return new

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
