"""Retraining jobs against the real queue: embedded SQLite, a separate worker, and Redis."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from core.repository import Repository
from tests.conftest import ROOT, Server, app_settings

TINY_JOB = {
    "max_steps": 12,
    "batch_size": 16,
    "latent_dim": 8,
    "network.width": 4,
    "network.label_dim": 4,
    "eval_every": 6,
    "eval_samples": 100,
    "log_every": 2,
    "checkpoint_every": 4,
}
REDIS_URL = os.environ.get("GAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def wait_state(url: str, job_id: str, states: set[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {states}: {job}")


def submit(url: str, **body: object) -> dict:
    payload = {"model": "tiny-cgan", "preset": "cdcgan", "overrides": TINY_JOB, **body}
    r = httpx.post(f"{url}/v1/jobs", json=payload)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    return r.json()


@pytest.fixture
def committed_models(models_dir: Path) -> Path:
    """The tiny models plus the committed mnist-cdcgan, whose manifest has real metrics."""
    shutil.copytree(ROOT / "models" / "mnist-cdcgan", models_dir / "mnist-cdcgan")
    return models_dir


def test_a_job_trains_publishes_promotes_and_is_served(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    job = submit(server.url, promote="always")
    events: list[str] = []
    with httpx.stream("GET", f"{server.url}/v1/jobs/{job['id']}/events", timeout=180) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            if line.startswith("data: ") and events[-1] == "state":
                if json.loads(line.removeprefix("data: "))["state"] in ("succeeded", "failed"):
                    break
    done = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded", done
    assert {"start", "progress", "evaluation", "state"} <= set(events)
    assert done["published_version"] == 2 and done["promoted"] is True
    assert done["progress"]["step"] == 12 and done["progress"]["max_steps"] == 12
    assert done["metrics"]["generated"]["mode_coverage"]["classes_covered"] >= 1
    sample = httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-cgan"})
    deadline = time.monotonic() + 20
    while sample.headers["x-model-version"] != "2" and time.monotonic() < deadline:
        time.sleep(0.2)
        sample = httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-cgan"})
    assert sample.headers["x-model-version"] == "2"
    grid = httpx.get(f"{server.url}/v1/jobs/{job['id']}/samples.png")
    assert grid.status_code == 200 and grid.content.startswith(b"\x89PNG")
    assert '"event": "completed"' in httpx.get(f"{server.url}/v1/jobs/{job['id']}/log").text
    listing = httpx.get(f"{server.url}/v1/jobs", params={"state": "succeeded"}).json()
    assert [j["id"] for j in listing["jobs"]] == [job["id"]]
    assert 'gan_jobs{state="succeeded"} 1.0' in httpx.get(f"{server.url}/metrics").text


def test_a_fine_tune_starts_from_the_base_version(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    job = submit(
        server.url, base_version=1, promote="never", overrides={**TINY_JOB, "max_steps": 2}
    )
    done = wait_state(server.url, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["promoted"] is False, done
    manifest = Repository(models_dir).manifest("tiny-cgan", done["published_version"])
    assert manifest.parent_version == 1
    mismatched = httpx.post(
        f"{server.url}/v1/jobs",
        json={"model": "tiny-cgan", "base_version": 1, "overrides": {"max_steps": 2}},
    )
    assert mismatched.status_code == 422 and mismatched.json()["field"] == "base_version"


def test_if_better_keeps_a_worse_model_out_of_production(
    committed_models: Path,
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    repo = Repository(committed_models)
    production, versions = repo.aliases("mnist-cdcgan")["production"], repo.versions("mnist-cdcgan")
    server = start_server(GAN_MODELS_DIR=str(committed_models))
    job = submit(server.url, model="mnist-cdcgan", promote="if_better")
    done = wait_state(server.url, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["promoted"] is False, done
    assert "FID" in done["promotion_reason"]
    assert repo.aliases("mnist-cdcgan")["production"] == production
    assert repo.versions("mnist-cdcgan") == [*versions, done["published_version"]]  # not promoted


def test_cancel_a_queued_and_a_running_job(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    running = submit(server.url, overrides={**TINY_JOB, "max_steps": 100_000})
    queued = submit(server.url)  # one worker: waits behind the first
    assert httpx.get(f"{server.url}/v1/jobs/{queued['id']}").json()["state"] == "queued"
    gone = httpx.delete(f"{server.url}/v1/jobs/{queued['id']}")
    assert gone.status_code == 200 and gone.json()["state"] == "cancelled"
    assert httpx.delete(f"{server.url}/v1/jobs/{queued['id']}").status_code == 409

    deadline = time.monotonic() + 60
    while (record := httpx.get(f"{server.url}/v1/jobs/{running['id']}").json())["progress"][
        "step"
    ] < 4:
        assert time.monotonic() < deadline and record["state"] in ("queued", "running"), record
        time.sleep(0.2)
    httpx.delete(f"{server.url}/v1/jobs/{running['id']}")
    done = wait_state(server.url, running["id"], {"cancelled", "failed", "succeeded"}, 60)
    assert done["state"] == "cancelled" and done["published_version"] is None
    assert Repository(models_dir).versions("tiny-cgan") == [1]


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


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.jobs.worker"], cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


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


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"overrides": {"max_stepz": 5}}, 422, "overrides.max_stepz"),
        ({"overrides": {"max_steps": -5}}, 422, "overrides.max_steps"),
        ({"overrides": {"max_steps": 10**9}}, 422, "overrides.max_steps"),
        ({"overrides": {"network.width": 10**6}}, 422, "overrides.network.width"),
        ({"preset": "nope"}, 422, "preset"),
        ({"dataset": "abc123"}, 422, "dataset"),
        ({"base_version": 9}, 422, "base_version"),
        ({"model": "../x"}, 422, "model"),
        ({"promote": "sometimes"}, 422, "promote"),
    ],
)
def test_bad_job_requests_are_refused_before_queueing(
    models_dir: Path, tmp_path: Path, body: dict, status: int, field: str
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = app_settings(models_dir, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/jobs", json={"model": "tiny-cgan", **body})
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["field"] == field
        assert c.get("/v1/jobs").json()["total"] == 0


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _png(value: int) -> bytes:
    from core.imaging import encode_png

    return encode_png(np.full((28, 28, 1), value, np.uint8))


def test_dataset_uploads(models_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = app_settings(models_dir, data_dir=tmp_path / "data", max_dataset_bytes=200_000)
    good = _zip(
        {f"{c}/{i}.png": _png(k * 50 + i) for k, c in enumerate(["cat", "dog"]) for i in range(3)}
    )
    arr = io.BytesIO()
    np.savez(arr, images=np.zeros((4, 28, 28), np.uint8), labels=np.array([0, 1, 0, 1]))
    bomb = _zip({"a/x.png": b"\0" * 150_000})
    cases = {
        "../": (_zip({"../evil/x.png": _png(1)}), 422),
        "absolute": (_zip({"/abs/x.png": _png(1)}), 422),
        "symlink": (_zip({"a/x.png": _png(1)}, symlink="a/link.png"), 422),
        "bomb": (bomb, 413),
        "empty": (_zip({}), 422),
        "not an image": (_zip({"a/x.png": b"hello"}), 422),
        "text": (b"just text", 422),
        "too large": (b"\0" * 300_000, 413),
    }
    with TestClient(create_app(settings)) as c:
        made = c.post("/v1/datasets", files={"file": ("pets.zip", good)}, data={"name": "pets"})
        assert made.status_code == 201, made.text
        meta = made.json()
        assert meta["size"] == 6 and meta["class_names"] == ["cat", "dog"]
        assert meta["image_shape"] == [1, 28, 28]
        npz = c.post("/v1/datasets", files={"file": ("d.npz", arr.getvalue())})
        assert npz.status_code == 201, npz.text
        for label, (data, status) in cases.items():
            r = c.post("/v1/datasets", files={"file": ("x.zip", data)})
            assert r.status_code == status, (label, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        listed = c.get("/v1/datasets").json()
        assert {d["id"] for d in listed} == {meta["id"], npz.json()["id"]}
        assert not (tmp_path / "evil").exists()
        job = c.post("/v1/jobs", json={"model": "pets", "dataset": meta["id"]})
        assert job.status_code == 202, job.text
