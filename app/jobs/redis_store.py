"""Job records in Redis: what every replica and worker reaches when scaled out, with no shared
filesystem (``GAN_QUEUE_URL``, the queue's own Redis; ``app.jobs.store.open_store`` picks it).

    gan-serve:job:<id>          the record (JSON, as the file store's job.json)
    gan-serve:job:<id>:config   the validated training config its child runs
    gan-serve:jobs              every id, scored by creation time (listings, newest first)
    gan-serve:jobs:<state>      the ids in one state, likewise (list by state: the reaper, 429s)

A change is an optimistic transaction: WATCH the record, read it, apply the change, MULTI/EXEC.
A write by anyone else in between aborts the EXEC and the change is applied again to the new
record, so, as under the file store's lock, no writer loses another's update and a
compare-and-set on the state holds. The record and its state index change in one EXEC.

Redis unreachable is :class:`NotReady` (a 503 with Retry-After); records persist as Redis
does (the compose file runs it with the append-only file).
"""

from __future__ import annotations

import functools
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import redis
from redis.exceptions import ConnectionError as RedisDown
from redis.exceptions import TimeoutError as RedisSlow
from redis.exceptions import WatchError

from app.jobs.store import Job, JobStore, State
from core import identifiers
from core.errors import NotFound, NotReady

PREFIX = "gan-serve"
STATES: tuple[State, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
P = ParamSpec("P")
R = TypeVar("R")


def _reachable(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (RedisDown, RedisSlow) as e:
            raise NotReady("the job store (Redis) is unreachable; retry later") from e

    return call


class RedisJobStore(JobStore):
    """Records in Redis; the data directory keeps what needs files (runs, logs, samples).

    >>> store = RedisJobStore(Path("/data"), "redis://redis:6379/0")
    """

    def __init__(self, data_dir: Path, url: str) -> None:
        super().__init__(data_dir)
        self.redis = redis.Redis.from_url(url, decode_responses=True)

    def _record(self, job_id: str) -> str:
        return f"{PREFIX}:job:{identifiers.job_id(job_id)}"

    def _index(self, state: str | None = None) -> str:
        return f"{PREFIX}:jobs" if state is None else f"{PREFIX}:jobs:{state}"

    @_reachable
    def create(self, *, config: str, **fields: Any) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], **fields)
        key = self._record(job.id)
        with self.redis.pipeline() as tx:  # MULTI/EXEC
            tx.set(key, job.model_dump_json())
            tx.set(f"{key}:config", config)
            tx.zadd(self._index(), {job.id: job.created})
            tx.zadd(self._index(job.state), {job.id: job.created})
            tx.execute()
        return job

    @_reachable
    def discard(self, job_id: str) -> None:
        key = self._record(job_id)
        with self.redis.pipeline() as tx:
            tx.delete(key, f"{key}:config")
            for index in (None, *STATES):
                tx.zrem(self._index(index), job_id)
            tx.execute()
        shutil.rmtree(self.folder(job_id).root, ignore_errors=True)

    @_reachable
    def get(self, job_id: str) -> Job:
        raw = self.redis.get(self._record(job_id))
        if raw is None:
            raise NotFound(f"no job {job_id!r}")
        return Job.model_validate_json(raw)

    @_reachable
    def list(self, state: str | None = None) -> list[Job]:
        ids = [str(i) for i in self.redis.zrevrange(self._index(state), 0, -1)]
        if not ids:
            return []
        raws = self.redis.mget([self._record(i) for i in ids])
        # A record discarded between the two reads is gone: skip it, as the file store does.
        jobs = [Job.model_validate_json(raw) for raw in raws if raw is not None]
        return [job for job in jobs if state is None or job.state == state]

    @_reachable
    def config(self, job_id: str) -> str:
        raw = self.redis.get(f"{self._record(job_id)}:config")
        if raw is None:
            raise NotFound(f"job {job_id!r} has no config")
        return str(raw)

    @_reachable
    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> Job:
        key = self._record(job_id)
        with self.redis.pipeline() as tx:
            while True:
                try:
                    tx.watch(key)
                    raw = tx.get(key)
                    if raw is None:
                        raise NotFound(f"no job {job_id!r}")
                    job = Job.model_validate_json(raw)
                    new = change(job.model_copy(deep=True))
                    if new is None:
                        return job
                    tx.multi()
                    tx.set(key, new.model_dump_json())
                    if new.state != job.state:
                        tx.zrem(self._index(job.state), job.id)
                        tx.zadd(self._index(new.state), {job.id: job.created})
                    tx.execute()
                    return new
                except WatchError:  # another writer got in first: apply the change to theirs
                    continue
