"""app.jobs.queue: the embedded SQLite queue across restarts, the reaper, and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.app.helpers import TINY_JOB, submit, wait_state
from tests.conftest import ROOT, Server

REDIS_URL = os.environ.get("GAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.jobs.worker"], cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_a_job_queued_before_a_restart_runs_after_it(models_dir: Path, tmp_path: Path) -> None:
    env = {"GAN_MODELS_DIR": str(models_dir), "GAN_DATA_DIR": str(tmp_path / "data")}
    first = Server({**env, "GAN_EMBEDDED_WORKER": "false"})
    try:
        first.wait_ready()
        job = submit(first.url)
    finally:
        first.stop()
    second = Server(env)
    try:
        second.wait_ready()
        done = wait_state(second.url, job["id"], {"succeeded", "failed"})
        assert done["state"] == "succeeded", done
    finally:
        second.stop()


def test_a_worker_killed_mid_run_is_detected_and_the_job_resumes(
    models_dir: Path,
    tmp_path: Path,
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    env = {
        "GAN_MODELS_DIR": str(models_dir),
        "GAN_DATA_DIR": str(tmp_path / "data"),
        "GAN_JOB_STALE_S": "2",
    }
    server = start_server(**env, GAN_EMBEDDED_WORKER="false")
    worker = _worker(env)
    try:
        # Evaluations are what cost time in a tiny job: one at the end is enough here.
        slow = {**TINY_JOB, "max_steps": 400, "checkpoint_every": 10, "eval_every": 400}
        job = submit(server.url, overrides=slow)
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["progress"]["step"] < 20:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = _worker(env)
        done = wait_state(server.url, job["id"], {"succeeded", "failed"})
        assert done["state"] == "succeeded" and done["attempts"] == 2, done
        stats = (tmp_path / "data" / "jobs" / job["id"] / "run" / "stats.jsonl").read_text()
        starts = [json.loads(x) for x in stats.splitlines() if '"event": "start"' in x]
        assert len(starts) == 2 and starts[1]["step"] >= 10  # resumed from its checkpoint
    finally:
        worker.kill()
        worker.wait()


def test_redis_queue_with_a_separate_worker(models_dir: Path, tmp_path: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Redis at {REDIS_URL}")
    client.flushdb()
    env = {
        "GAN_MODELS_DIR": str(models_dir),
        "GAN_DATA_DIR": str(tmp_path / "data"),
        "GAN_QUEUE_URL": REDIS_URL,
    }
    server = start_server(**env)
    job = submit(server.url)
    time.sleep(1)
    assert httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["state"] == "queued"
    worker = _worker(env)
    try:
        done = wait_state(server.url, job["id"], {"succeeded", "failed"})
        assert done["state"] == "succeeded", done
        assert done["worker"] is not None and str(worker.pid) in done["worker"]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        client.flushdb()
        client.close()
