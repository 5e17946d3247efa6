"""The api and worker images, run as the compose deployment runs them (make image-test).

Containers share host networking (each api on its own PORT) and one volume at /data, and queue
jobs on the Redis on loopback, as compose's services share the data volume and Redis.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, free_port
from tests.image.conftest import FIGURES, Container

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

KEY = "image-test-key"
ADMIN = {"authorization": f"Bearer {KEY}"}
TINY_JOB = {
    "max_steps": 400,
    "batch_size": 16,
    "latent_dim": 8,
    "network.width": 4,
    "network.label_dim": 4,
    "eval_every": 400,
    "eval_samples": 100,
    "log_every": 2,
    "checkpoint_every": 10,
    "usefulness.classifier_steps": 20,
}

Start = Callable[..., Container]


def _api(start: Start, images: dict[str, str], **env: str) -> tuple[Container, str]:
    port = free_port()
    began = time.monotonic()
    api = start(images["api"], PORT=str(port), GAN_API_KEY=KEY, **env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"api not ready:\n{api.logs()[-3000:]}"
        assert api.inspect(".State.Running") == "true", api.logs()[-3000:]
        time.sleep(0.1)
    FIGURES.append(f"api container: docker run to /readyz 200 in {time.monotonic() - began:.1f} s")
    return api, url


def _queue_env(redis_url: str) -> dict[str, str]:
    return {"GAN_QUEUE_URL": redis_url, "GAN_LOG_LEVEL": "info"}


def _job(url: str, job_id: str) -> dict:
    response = httpx.get(f"{url}/v1/jobs/{job_id}", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _wait_job(url: str, job_id: str, done: Callable[[dict], bool], timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while not done(job := _job(url, job_id)):
        assert time.monotonic() < deadline, f"job {job_id}: {job}"
        time.sleep(0.5)
    return job


def test_debians_docker_compose_accepts_the_compose_file() -> None:
    # Compose v2 reads the same file; 1.29 is the older reader most likely to refuse it.
    env = {**os.environ, "GAN_API_KEY": KEY}
    proc = subprocess.run(
        ["docker-compose", "config"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    worker = yaml.safe_load(proc.stdout)["services"]["worker"]["environment"]
    assert worker["GAN_DEVICE"] == "auto" and worker["GAN_JOB_WORKERS"] == "1", worker


def test_the_api_serves_as_a_non_root_user_without_torch(
    images: dict[str, str], start: Start
) -> None:
    api, url = _api(start, images)
    sample = httpx.post(f"{url}/v1/sample", json={"model": "mnist-gan", "seed": 3}, timeout=30)
    assert sample.status_code == 200 and sample.content.startswith(b"\x89PNG"), sample.text
    scored = httpx.post(
        f"{url}/v1/discriminate",
        json={"model": "mnist-gan", "images": [base64.b64encode(sample.content).decode()]},
        timeout=30,
    )
    assert scored.status_code == 200, scored.text
    assert 0 <= scored.json()["results"][0]["probability_real"] <= 1

    assert api.exec("id", "-u").stdout.strip() == "10001"
    no_torch = api.exec("python", "-c", "import torch")
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    assert api.exec("touch", "/srv/models/x").returncode != 0, "the image's models are read only"
    # The image's HEALTHCHECK probes /readyz on $PORT (first probe after its 10 s interval).
    deadline = time.monotonic() + 60
    while (health := api.inspect(".State.Health.Status")) != "healthy":
        assert health == "starting" and time.monotonic() < deadline, health
        time.sleep(1)


def test_a_worker_trains_publishes_and_the_running_api_serves_the_new_version(
    images: dict[str, str], start: Start, redis_url: str
) -> None:
    env = {**_queue_env(redis_url), "GAN_REGISTRY_POLL_SECONDS": "0.5"}
    api, url = _api(start, images, **env)
    started_at = api.inspect(".State.StartedAt")
    start(images["worker"], **env)
    quick = {
        k: TINY_JOB[k]
        for k in ("batch_size", "eval_samples", "log_every", "usefulness.classifier_steps")
    }
    body = {
        "model": "mnist-cdcgan",
        "preset": "cdcgan",
        "base_version": 3,
        "promote": "always",
        "overrides": {**quick, "max_steps": 4, "eval_every": 4, "checkpoint_every": 4},
    }
    began = time.monotonic()
    submitted = httpx.post(f"{url}/v1/jobs", json=body, headers=ADMIN, timeout=30)
    assert submitted.status_code == 202, submitted.text
    job = _wait_job(url, submitted.json()["id"], lambda j: j["state"] in {"succeeded", "failed"})
    FIGURES.append(f"fine-tune job (4 steps, export, publish): {time.monotonic() - began:.0f} s")
    assert job["state"] == "succeeded" and job["promoted"], job
    version = job["published_version"]
    assert version > 3, job

    # The api polls the shared volume: the new version becomes production without a restart.
    deadline = time.monotonic() + 60
    while True:
        r = httpx.post(f"{url}/v1/sample", json={"model": "mnist-cdcgan", "seed": 1}, timeout=30)
        assert r.status_code == 200, r.text
        if r.headers["x-model-version"] == str(version):
            break
        assert time.monotonic() < deadline, r.headers
        time.sleep(0.2)
    assert api.inspect(".State.StartedAt") == started_at
    assert api.inspect(".RestartCount") == "0"
    published = f"/data/models/mnist-cdcgan/{version}/model.json"
    assert api.exec("test", "-f", published).returncode == 0
    assert api.exec("test", "-e", f"/srv/models/mnist-cdcgan/{version}").returncode != 0

    # An export of that version: the api (no torch) writes its header, the worker makes the
    # shards in the shared volume, the api serves them.
    export = {"model": "mnist-cdcgan", "version": version, "n": 25, "shard_size": 10}
    began = time.monotonic()
    submitted = httpx.post(f"{url}/v1/exports", json=export, headers=ADMIN, timeout=30)
    assert submitted.status_code == 202, submitted.text
    job = _wait_job(url, submitted.json()["id"], lambda j: j["state"] in {"succeeded", "failed"})
    FIGURES.append(f"export job (25 images, 3 shards): {time.monotonic() - began:.0f} s")
    assert job["state"] == "succeeded", job
    manifest = httpx.get(f"{url}/v1/exports/{job['id']}/manifest.json", timeout=10).json()
    assert manifest["complete"] and [s["count"] for s in manifest["shards"]] == [10, 10, 5]
    shard = httpx.get(f"{url}/v1/exports/{job['id']}/shards/shard-000002.npz", timeout=10)
    assert hashlib.sha256(shard.content).hexdigest() == manifest["shards"][2]["sha256"]
    with np.load(io.BytesIO(shard.content)) as arrays:
        pixels, seeds = arrays["images"], arrays["seeds"]
    same = httpx.post(
        f"{url}/v1/sample",
        json={
            "model": "mnist-cdcgan",
            "version": version,
            "seeds": seeds.tolist(),
            "format": "npy",
        },
        timeout=30,
    )
    assert np.array_equal(np.load(io.BytesIO(same.content)), pixels)


def test_sigterm_lets_the_api_finish_requests_in_flight(
    images: dict[str, str], start: Start
) -> None:
    api, url = _api(start, images)
    body = json.dumps({"model": "mnist-gan", "seed": 5, "n": 4, "format": "npy"}).encode()
    headers_sent, release = threading.Event(), threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield body[:8]
        headers_sent.set()
        release.wait(60)
        yield body[8:]

    result: dict[str, httpx.Response] = {}

    def send() -> None:
        result["response"] = httpx.post(
            f"{url}/v1/sample", content=slow_body(), timeout=60,
            headers={"content-type": "application/json"},
        )  # fmt: skip

    sender = threading.Thread(target=send)
    sender.start()
    assert headers_sent.wait(30)
    # One event loop serves both connections: once this answers, the first request is in.
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    api.engine("kill", "--signal", "TERM", api.name)
    deadline = time.monotonic() + 30
    while True:  # shutting down: the listener closes while the request is still open
        try:
            httpx.get(f"{url}/healthz", timeout=2)
        except httpx.TransportError:
            break
        assert time.monotonic() < deadline, "the api kept accepting connections after SIGTERM"
        time.sleep(0.1)
    release.set()
    sender.join(60)
    response = result["response"]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    assert len(response.content) > 4 * 28 * 28  # four 28x28 images
    api.engine("wait", api.name, timeout=60)
    assert "Application shutdown complete." in api.logs()
    # uvicorn re-raises the SIGTERM it handled once it has shut down: 143, not docker's kill (137).
    assert api.inspect(".State.ExitCode") == "143", api.logs()[-3000:]


def test_sigterm_sends_the_workers_job_back_to_the_queue_from_its_checkpoint(
    images: dict[str, str], start: Start, redis_url: str
) -> None:
    env = _queue_env(redis_url)
    api, url = _api(start, images, **env)
    worker = start(images["worker"], **env)
    body = {"model": "image-test", "preset": "cdcgan", "promote": "never", "overrides": TINY_JOB}
    submitted = httpx.post(f"{url}/v1/jobs", json=body, headers=ADMIN, timeout=30)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    _wait_job(url, job_id, lambda j: j["progress"]["step"] >= 20, timeout=300)

    began = time.monotonic()
    worker.engine("stop", "--time", "60", worker.name, timeout=90)
    stopped = time.monotonic() - began
    FIGURES.append(f"worker: docker stop (checkpoint, requeue, exit) {stopped:.1f} s")
    assert worker.inspect(".State.ExitCode") == "0", worker.logs()[-3000:]
    requeued = _job(url, job_id)
    assert requeued["state"] == "queued" and requeued["attempts"] == 1, requeued

    start(images["worker"], **env)  # a fresh worker takes it off Redis and resumes it
    done = _wait_job(url, job_id, lambda j: j["state"] in {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    stats = api.exec("cat", f"/data/jobs/{job_id}/run/stats.jsonl").stdout
    starts = [json.loads(line) for line in stats.splitlines() if '"event": "start"' in line]
    assert len(starts) == 2 and starts[1]["step"] >= 10, starts  # resumed from its checkpoint
