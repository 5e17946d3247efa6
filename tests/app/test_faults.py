"""Faults under a running service: model files damaged while served, Redis restarting under
queued jobs, a disk filling up under a training job. Real processes throughout: uvicorn,
redis-server, ``python -m app.jobs.worker`` and its training child."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from app.jobs.queue import JobQueue
from app.main import create_app
from core.errors import NotReady
from core.repository import Repository
from tests.conftest import ROOT, app_settings, free_port

from .helpers import TINY_JOB, flip_a_byte, problem, submit, wait_state
from .test_server import _metric, _wait_for

# --- a serving version's files damaged on disk -----------------------------------------------


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "corrupted": (flip_a_byte, "generator.onnx has sha256"),
    "deleted": (Path.unlink, "generator.onnx is missing"),
}


def _publish_copy(repo: Repository, name: str, generator: bytes) -> int:
    """v1's artifacts with the given generator bytes, published as production."""
    manifest = repo.manifest(name, 1).to_dict()
    with repo.staging(name) as staged:
        for file in manifest["artifacts"]:
            if file != "generator.onnx":
                shutil.copy(repo.version_dir(name, 1) / file, staged / file)
        (staged / "generator.onnx").write_bytes(generator)
        return repo.publish(staged, manifest, ["production"]).version


@pytest.mark.parametrize("fault", DAMAGE)
def test_a_serving_version_damaged_on_disk_serves_from_memory_and_is_reported(
    models_dir: Path,
    start_server,  # type: ignore[no-untyped-def]
    fault: str,
) -> None:
    damage, reported = DAMAGE[fault]
    # No response cache: "from memory" here means the engine's, each request drawn anew.
    server = start_server(GAN_MODELS_DIR=str(models_dir), GAN_RESPONSE_CACHE_BYTES="0")
    repo = Repository(models_dir)
    body = {"model": "tiny-cgan", "seed": 3, "n": 4, "format": "npy"}

    def sample() -> httpx.Response:
        return httpx.post(f"{server.url}/v1/sample", json=body)

    def ready() -> dict:
        r = httpx.get(f"{server.url}/readyz")
        assert r.status_code == 200, r.text
        return r.json()

    before = sample().content
    onnx = repo.version_dir("tiny-cgan", 1) / "generator.onnx"
    original = onnx.read_bytes()
    damage(onnx)
    _wait_for(lambda: ready()["status"] == "degraded")
    models = ready()["models"]
    assert reported in models["tiny-cgan"]["integrity"], models
    assert models["tiny-cgan"]["version"] == 1 and models["tiny-gan"]["integrity"] is None
    served = sample()
    assert served.status_code == 200 and served.headers["x-model-version"] == "1"
    assert served.content == before
    metrics = httpx.get(f"{server.url}/metrics").text
    assert _metric(metrics, 'gan_model_artifacts_ok{model="tiny-cgan",version="1"}') == 0
    assert _metric(metrics, 'gan_model_artifacts_ok{model="tiny-gan",version="1"}') == 1

    # Once another version serves, moving back to the damaged one is refused.
    assert _publish_copy(repo, "tiny-cgan", original) == 2
    _wait_for(lambda: sample().headers["x-model-version"] == "2")
    assert ready()["status"] == "ready"
    repo.set_alias("tiny-cgan", "production", 1)
    _wait_for(lambda: "generator.onnx" in (ready()["models"]["tiny-cgan"]["error"] or ""))
    assert sample().headers["x-model-version"] == "2"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'gan_model_artifacts_ok{model="tiny-cgan",version="1"}' not in metrics
    assert _metric(metrics, 'gan_model_artifacts_ok{model="tiny-cgan",version="2"}') == 1

    # Repaired on disk: v1 verifies, loads and serves again.
    onnx.write_bytes(original)
    _wait_for(lambda: sample().headers["x-model-version"] == "1")
    assert sample().content == before and ready()["status"] == "ready"


def test_not_ready_is_a_problem_with_each_models_detail(models_dir: Path) -> None:
    flip_a_byte(Repository(models_dir).version_dir("tiny-gan", 1) / "generator.onnx")
    with TestClient(create_app(app_settings(models_dir))) as client:
        r = client.get("/readyz")
        body = problem(r, 503)
        assert r.headers["retry-after"] == "1"
        assert body["detail"].startswith("not ready: tiny-gan: ") and "sha256" in body["detail"]
        assert body["models"]["tiny-gan"]["ready"] is False
        assert body["models"]["tiny-cgan"] == {
            "ready": True,
            "version": 1,
            "device": "cpu",
            "error": None,
            "integrity": None,
        }


# --- Redis restarting under the job queue ----------------------------------------------------


class RedisServer:
    """A private redis-server on a free loopback port, persisting to an append-only file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", str(self.folder), "--appendonly", "yes", "--save", ""]  # fmt: skip
        with open(self.folder / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        with redis.Redis.from_url(self.url) as client:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert self.proc.poll() is None and time.monotonic() < deadline, self.log()
                    time.sleep(0.05)

    def shutdown(self) -> None:
        """SHUTDOWN: the append-only file is flushed, so what was queued survives."""
        assert self.proc is not None
        with redis.Redis.from_url(self.url) as client:
            client.shutdown()
        assert self.proc.wait(timeout=10) == 0, self.log()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return (self.folder / "redis.log").read_text()[-2000:]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    yield server
    server.kill()


def _job_env(models_dir: Path, data_dir: Path, redis_server: RedisServer) -> dict[str, str]:
    return {
        "GAN_MODELS_DIR": str(models_dir),
        "GAN_DATA_DIR": str(data_dir),
        "GAN_QUEUE_URL": redis_server.url,
    }


def _wait_step(url: str, job_id: str, step: int) -> None:
    deadline = time.monotonic() + 60
    while (job := httpx.get(f"{url}/v1/jobs/{job_id}").json())["progress"]["step"] < step:
        assert time.monotonic() < deadline and job["state"] in ("queued", "running"), job
        time.sleep(0.1)


def _start_worker(
    env: dict[str, str], log: Path, max_file_bytes: int | None = None
) -> subprocess.Popen[bytes]:
    """``python -m app.jobs.worker``, its output in ``log``. With ``max_file_bytes``, the worker and
    so its training child may not write a file past that size (RLIMIT_FSIZE: such writes fail
    with EFBIG as a full disk fails them with ENOSPC; Python ignores SIGXFSZ, so they raise)."""
    code = "import runpy; runpy.run_module('app.jobs.worker', run_name='__main__')"
    if max_file_bytes is not None:
        limit = f"({max_file_bytes}, {max_file_bytes})"
        code = f"import resource; resource.setrlimit(resource.RLIMIT_FSIZE, {limit}); {code}"
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def test_jobs_queued_on_redis_run_after_redis_restarts(
    models_dir: Path,
    tmp_path: Path,
    start_server,  # type: ignore[no-untyped-def]
    redis_server: RedisServer,
) -> None:
    env = _job_env(models_dir, tmp_path / "data", redis_server)
    server = start_server(**env)
    log = tmp_path / "worker.log"
    worker = _start_worker(env, log)
    try:
        busy = submit(server.url, promote="never", overrides={**TINY_JOB, "max_steps": 100_000})
        _wait_step(server.url, busy["id"], 2)  # the one worker is busy: the next job waits
        queued = submit(server.url, promote="never", overrides={**TINY_JOB, "max_steps": 2})

        redis_server.shutdown()
        refused = httpx.post(f"{server.url}/v1/jobs", json={"model": "tiny-cgan"})
        assert "job store (Redis) is unreachable" in problem(refused, 503)["detail"]
        assert refused.headers["retry-after"] == "1"
        problem(httpx.get(f"{server.url}/v1/jobs"), 503)  # the records are in Redis too
        time.sleep(1.5)  # the busy job trains on, unrecorded; the worker's reads fail and retry

        redis_server.start()
        assert worker.poll() is None and "ConnectionError" in log.read_text()
        assert httpx.get(f"{server.url}/v1/jobs").json()["total"] == 2  # no stranded record
        before = httpx.get(f"{server.url}/v1/jobs/{busy['id']}").json()["progress"]["step"]
        _wait_step(server.url, busy["id"], before + 2)  # recorded again
        httpx.delete(f"{server.url}/v1/jobs/{busy['id']}")
        assert wait_state(server.url, busy["id"], {"cancelled", "failed"})["state"] == "cancelled"
        later = submit(server.url)  # the service reconnects too
        assert httpx.delete(f"{server.url}/v1/jobs/{later['id']}").json()["state"] == "cancelled"
        done = wait_state(server.url, queued["id"], {"succeeded", "failed"}, timeout=120)
        assert done["state"] == "succeeded" and done["attempts"] == 1, done
        published = Repository(tmp_path / "data" / "models", base=models_dir)
        assert published.versions("tiny-cgan") == [1, 2]
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_a_requeue_while_redis_is_down_is_retried_by_the_reaper(
    models_dir: Path, redis_server: RedisServer
) -> None:
    queue = JobQueue(app_settings(models_dir, queue_url=redis_server.url))
    job = queue.store.create(
        config="{}", model="tiny-cgan", preset="cdcgan", state="running", heartbeat=0.0
    )
    try:
        redis_server.shutdown()
        with pytest.raises(NotReady, match="is unreachable"):
            queue.reap()
        redis_server.start()
        assert queue.store.get(job.id).state == "running"  # not queued while off the queue
        assert queue.reap() == [job.id]
        assert queue.store.get(job.id).state == "queued" and queue.pending() == 1
    finally:
        queue.huey.storage.pool.disconnect()


# --- a disk filling up under a training job ---------------------------------------------------


def test_a_full_disk_while_checkpointing_fails_the_job_and_publishes_nothing(
    models_dir: Path,
    tmp_path: Path,
    start_server,  # type: ignore[no-untyped-def]
    redis_server: RedisServer,
) -> None:
    env = _job_env(models_dir, tmp_path / "data", redis_server)
    server = start_server(**env)
    overrides = {
        **TINY_JOB,
        "max_steps": 100_000,
        "checkpoint_every": 20,
        "log_every": 20,
        "eval_every": 100_000,
    }
    job = submit(server.url, promote="always", overrides=overrides)
    folder = tmp_path / "data" / "jobs" / job["id"]
    checkpoint = folder / "run" / "checkpoint.pt"
    first = _start_worker(env, tmp_path / "first.log")
    try:
        _wait_for(checkpoint.exists, timeout=60)
    finally:
        first.terminate()  # a graceful stop: the job checkpoints and goes back on the queue
        first.wait(timeout=30)
    assert httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["state"] == "queued"
    old = checkpoint.read_bytes()
    limit = len(old) // 2  # no room for a new checkpoint; room for the job's logs and records
    assert all(p.stat().st_size < limit // 2 for p in folder.rglob("*") if p != checkpoint)

    second = _start_worker(env, tmp_path / "second.log", max_file_bytes=limit)
    try:
        done = wait_state(server.url, job["id"], {"succeeded", "failed"}, timeout=120)
        assert second.poll() is None  # the worker itself carries on
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert done["state"] == "failed", done
    assert "File too large while writing the checkpoint" in done["error"], done["error"]
    assert done["published_version"] is None and done["progress"]["step"] >= 20
    assert checkpoint.read_bytes() == old
    assert sorted(p.name for p in checkpoint.parent.glob("checkpoint*")) == ["checkpoint.pt"]
    published = tmp_path / "data" / "models"
    assert Repository(published, base=models_dir).versions("tiny-cgan") == [1]
    staged = [p for p in published.rglob(".staging-*")] + [p for p in models_dir.rglob(".st*")]
    assert staged == []
