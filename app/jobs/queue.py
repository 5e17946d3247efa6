"""The job queue: Huey, on SQLite in the data directory or on Redis to scale out.

The service enqueues job ids; a consumer runs them through :func:`app.jobs.runner.run_job`. With no
``GAN_QUEUE_URL`` the consumer runs inside the service (``make serve`` alone can retrain);
with ``redis://...`` the service only enqueues and ``python -m app.jobs.worker`` processes consume.

Restart safety: Huey persists queued tasks in its storage. A job whose worker died mid-run is
found by :meth:`JobQueue.reap` (a running record whose heartbeat went stale) and requeued to
resume from its checkpoint, or failed with the reason once it has used its attempts.

An unreachable queue (Redis restarting, SQLite locked) is :class:`NotReady`, a 503, for a new
job; a job that cannot be put back is left for the reaper's next round. Consumers survive the
outage: Huey logs each failed read, backs off and reads again, and the Redis client reconnects.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer

from app.jobs.runner import run_job
from app.jobs.store import Job, open_store
from app.settings import Settings
from core.errors import NotReady

log = logging.getLogger(__name__)
try:
    from redis.exceptions import ConnectionError as RedisDown  # BusyLoadingError too
    from redis.exceptions import TimeoutError as RedisSlow

    UNREACHABLE: tuple[type[Exception], ...] = (sqlite3.OperationalError, RedisDown, RedisSlow)
except ImportError:  # without the [redis] extra only the SQLite queue exists
    UNREACHABLE = (sqlite3.OperationalError,)


class _WorkerConsumer(Consumer):
    """A consumer whose stop signal also tells running jobs to checkpoint and requeue now."""

    shutdown: threading.Event

    def _handle_signal(self, signum: int, frame: object) -> None:
        self.shutdown.set()
        super()._handle_signal(signum, frame)


class _EmbeddedConsumer(Consumer):
    def _set_signal_handlers(self) -> None:
        """The web server owns this process's signals."""


class JobQueue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.huey = _huey(settings)
        self.shutdown = threading.Event()  # set: running jobs checkpoint and requeue
        self._task = self.huey.task(name="run_job", retries=0)(self._run)
        self._consumer: Consumer | None = None

    def _run(self, job_id: str) -> None:
        run_job(self.settings, job_id, self.shutdown, self.requeue)

    def enqueue(self, job_id: str) -> None:
        """Put a job on the queue; NotReady (503) when the queue's storage cannot be reached."""
        try:
            self._task(job_id)
        except UNREACHABLE as e:
            log.warning("job %s not queued: %s: %s", job_id, type(e).__name__, e)
            raise NotReady("the job queue is unreachable; retry later") from e

    def requeue(self, job_id: str) -> Job | None:
        """Put a running job back on the queue, to resume from its checkpoint.

        When the queue cannot take it, the job stays running with no heartbeat, so the
        reaper's next round tries again: an outage never strands a job as queued in the
        record but absent from the queue.
        """
        job = self.store.transition(
            job_id, {"running"}, state="queued", worker=None, heartbeat=None
        )
        if job is None:
            return None
        try:
            self.enqueue(job_id)
        except NotReady:
            self.store.transition(job_id, {"queued"}, state="running")
            raise
        return job

    def pending(self) -> int:
        return int(self.huey.pending_count())

    def consumer(self, *, embedded: bool) -> Consumer:
        cls = _EmbeddedConsumer if embedded else _WorkerConsumer
        # SIGTERM (docker stop) is a graceful stop: running jobs checkpoint and requeue.
        consumer = cls(
            self.huey,
            workers=self.settings.job_workers,
            worker_type="thread",
            periodic=False,
            initial_delay=0.1,
            max_delay=1.0,
            check_worker_health=False,
            graceful_signal="TERM",
        )
        consumer.shutdown = self.shutdown
        return consumer

    def start_embedded(self) -> None:
        self._consumer = self.consumer(embedded=True)
        self._consumer.start()

    def stop_embedded(self) -> None:
        if self._consumer is not None:
            self.shutdown.set()
            self._consumer.stop(graceful=True)
            self._consumer = None

    def reap(self) -> list[str]:
        """Requeue (or fail) running jobs whose worker stopped beating; returns their ids."""
        s = self.settings
        stale_before = time.time() - s.job_stale_s
        reaped = []
        for job in self.store.list("running"):
            if job.heartbeat is not None and job.heartbeat >= stale_before:
                continue
            if job.attempts >= s.job_max_attempts:
                done = self.store.transition(
                    job.id,
                    {"running"},
                    state="failed",
                    finished=time.time(),
                    error=f"its worker {job.worker} stopped responding {job.attempts} times",
                )
            else:
                done = self.requeue(job.id)
            if done is not None:
                log.warning("job %s: worker %s died; now %s", job.id, job.worker, done.state)
                reaped.append(job.id)
        return reaped


def _huey(settings: Settings) -> Huey:
    if settings.queue_url:
        return RedisHuey("gan-serve", url=settings.queue_url, results=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("gan-serve", filename=str(settings.data_dir / "queue.db"), results=False)
