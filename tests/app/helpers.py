"""Plain helpers shared by the app tests: problem+json and .npy answers, and jobs."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

PROBLEM = "application/problem+json"


def problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def npy(response) -> np.ndarray:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(response.content), allow_pickle=False)


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
    "usefulness.classifier_steps": 20,  # CAS and NAS at export: seconds, not a minute
}


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


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def private_redis(db: int) -> str:
    """GAN_TEST_REDIS_URL's server with database ``db`` instead, emptied: a test's own keys.
    No Redis skips, and fails under CI=true."""
    base = os.environ.get("GAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    url = f"{base.rsplit('/', 1)[0]}/{db}"
    with redis.Redis.from_url(url) as client:
        try:
            client.flushdb()
        except redis.ConnectionError:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip(f"no Redis at {url}")
    return url
