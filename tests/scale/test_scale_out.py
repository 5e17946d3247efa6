"""The scaled-out deployment on loopback (``make scale-test``): Debian's HAProxy running the
compose deployment's config (tests/scale/lb.py), three api replicas, two workers
(``python -m app.jobs.worker``) and Redis, all real processes sharing one data directory as the
compose services share the data volume. Job records live in Redis.

Timings are printed (``-s`` shows them; the README quotes them), never asserted: waits are
bounded by generous deadlines only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core.repository import Repository
from tests.app.helpers import TINY_JOB, private_redis, submit, wait_state
from tests.conftest import ROOT, Server
from tests.scale.lb import BINARY, LoadBalancer

pytestmark = pytest.mark.scale
POLL_S = 1.0  # GAN_REGISTRY_POLL_SECONDS: how often each replica looks for new versions and aliases
REDIS_DB = 14
CLIENTS = 8


@dataclass
class Cluster:
    lb: LoadBalancer
    replicas: list[Server]
    workers: list[subprocess.Popen[bytes]]
    repo: Repository
    data_dir: Path


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.jobs.worker"], cwd=ROOT, env={**os.environ, **env},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.fixture(scope="module")
def cluster(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not BINARY.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"no {BINARY}: make scale-test installs it (apt-get install haproxy)")
        pytest.skip(f"no {BINARY}: make scale-test installs it (apt-get install haproxy)")
    root = tmp_path_factory.mktemp("scale")
    models_dir = root / "models"
    shutil.copytree(template_repo, models_dir)
    redis_url = private_redis(REDIS_DB)
    env = {
        "GAN_MODELS_DIR": str(models_dir),
        "GAN_DATA_DIR": str(root / "data"),
        "GAN_QUEUE_URL": redis_url,
        "GAN_EMBEDDED_WORKER": "false",
        "GAN_REGISTRY_POLL_SECONDS": str(POLL_S),
        "GAN_JOB_STALE_S": "3",  # the reaper requeues a dead worker's job 3-8 s after it died
        "GAN_LOG_LEVEL": "warning",
        # Three replicas, two workers and their training children on a small machine: engine
        # threads that spin between runs would take the CPU the training needs.
        "GAN_ORT_SPINNING": "false",
        "GAN_INTRA_OP_THREADS": "1",
    }
    started = time.monotonic()
    replicas = [Server(env) for _ in range(3)]  # they start side by side
    workers: list[subprocess.Popen[bytes]] = []
    lb = None
    try:
        for replica in replicas:
            replica.wait_ready(timeout=120)
        workers += [_worker(env, root / f"worker-{i}.log") for i in range(2)]
        lb = LoadBalancer(root, [f"127.0.0.1:{r.port}" for r in replicas])
        lb.wait_up(3)
        print(f"\ncluster up in {time.monotonic() - started:.1f} s (3 replicas, 2 workers, LB)")
        repo = Repository(root / "data" / "models", base=models_dir)
        yield Cluster(lb, replicas, workers, repo, root / "data")
    finally:
        if lb is not None:
            lb.stop()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        for replica in replicas:
            replica.stop()
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()


def _serving(url: str) -> int:
    r = httpx.post(f"{url}/v1/sample", json={"model": "tiny-cgan", "seed": 0, "format": "npy"})
    assert r.status_code == 200, r.text
    return int(r.headers["x-model-version"])


def _until_served(replicas: list[Server], version: int, timeout: float = 60) -> list[float]:
    """Seconds until each replica (on its own port) serves ``version`` of tiny-cgan."""
    started = time.monotonic()
    reached: dict[int, float] = {}
    while len(reached) < len(replicas):
        assert time.monotonic() - started < timeout, f"served after {timeout} s: {reached}"
        for i, replica in enumerate(replicas):
            if i not in reached and _serving(replica.url) == version:
                reached[i] = time.monotonic() - started
        time.sleep(0.02)
    return [reached[i] for i in range(len(replicas))]


def _follow(url: str, job_id: str) -> tuple[dict[str, Any], float | None]:
    """The job's server-sent events through the LB to the end: the final record, and when
    (time.time()) the first progress event arrived."""
    first_progress = None
    kind = None
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", timeout=180) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "progress" and first_progress is None:
                first_progress = time.time()
            elif line.startswith("data: ") and kind == "state":
                job: dict[str, Any] = json.loads(line.removeprefix("data: "))
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    return job, first_progress
    raise AssertionError("the event stream ended before the job did")


def _events(data_dir: Path, job_id: str, kind: str) -> list[dict[str, Any]]:
    stats = (data_dir / "jobs" / job_id / "run" / "stats.jsonl").read_text()
    # A line cut short by a killed run is skipped: only whole lines of this kind are read.
    return [json.loads(x) for x in stats.splitlines() if f'"event": "{kind}"' in x]


def test_a_job_is_trained_once_promoted_and_served_by_every_replica(cluster: Cluster) -> None:
    assert cluster.repo.versions("tiny-cgan") == [1]
    job = submit(cluster.lb.url, promote="always")
    done, first_progress = _follow(cluster.lb.url, job["id"])
    assert done["state"] == "succeeded" and done["attempts"] == 1 and done["promoted"], done
    assert len(_events(cluster.data_dir, job["id"], "start")) == 1  # trained exactly once
    version = done["published_version"]
    assert cluster.repo.versions("tiny-cgan") == [1, version]
    assert cluster.repo.aliases("tiny-cgan")["production"] == version
    # Progress came through the LB while the job ran, not buffered until its end.
    assert first_progress is not None and first_progress < done["finished"]
    served = _until_served(cluster.replicas, version)
    print(
        f"\njob: {done['finished'] - done['created']:.1f} s queued to promoted; first progress"
        f" event through the LB {done['finished'] - first_progress:.1f} s before the end;"
        f" served by the 3 replicas {', '.join(f'{s:.2f}' for s in served)} s after the"
        f" stream's last event (poll interval {POLL_S} s)"
    )

    # Rollback and promotion again, through the entry point: every replica follows.
    for target in (1, version):
        r = httpx.put(
            f"{cluster.lb.url}/v1/models/tiny-cgan/aliases/production", json={"version": target}
        )
        assert r.status_code == 200, r.text
        served = _until_served(cluster.replicas, target)
        what = "rollback to" if target == 1 else "promotion of"
        print(
            f"{what} v{target}: on the replicas after {', '.join(f'{s:.2f}' for s in served)} s"
            f" (poll interval {POLL_S} s)"
        )


def _wait_for(check: Callable[[], dict[str, Any] | None], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def test_a_worker_killed_mid_job_resumes_on_the_other_from_its_checkpoint(
    cluster: Cluster,
) -> None:
    url = cluster.lb.url
    slow = {**TINY_JOB, "max_steps": 60, "checkpoint_every": 5, "eval_every": 60}
    job = submit(url, promote="never", overrides=slow)

    def running_past_10() -> dict[str, Any] | None:
        record: dict[str, Any] = httpx.get(f"{url}/v1/jobs/{job['id']}").json()
        return record if record["state"] == "running" and record["progress"]["step"] >= 10 else None

    record = _wait_for(running_past_10)
    pid = int(record["worker"].rsplit(":", 1)[1])
    (victim,) = [w for w in cluster.workers if w.pid == pid]
    (survivor,) = [w for w in cluster.workers if w.pid != pid]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    cluster.workers.remove(victim)
    killed = time.monotonic()

    def resumed() -> dict[str, Any] | None:
        record: dict[str, Any] = httpx.get(f"{url}/v1/jobs/{job['id']}").json()
        return record if record["attempts"] == 2 and record["state"] == "running" else None

    _wait_for(resumed)
    resumed_after = time.monotonic() - killed
    done = wait_state(url, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert done["worker"].endswith(f":{survivor.pid}")
    starts = _events(cluster.data_dir, job["id"], "start")
    assert len(starts) == 2 and starts[0]["step"] == 0
    assert starts[1]["step"] >= 5  # from its checkpoint (every 5 steps), not from step 0
    assert _events(cluster.data_dir, job["id"], "completed")[-1]["step"] == 60
    print(
        f"\nworker {pid} killed at step {record['progress']['step']}: the job ran again on"
        f" worker {survivor.pid} {resumed_after:.1f} s later (GAN_JOB_STALE_S=3, reaper every"
        f" 5 s), from step {starts[1]['step']}, and finished at step 60"
    )


def test_the_lb_refuses_a_body_over_the_dataset_limit_as_a_problem(cluster: Cluster) -> None:
    with socket.create_connection(("127.0.0.1", cluster.lb.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/datasets HTTP/1.1\r\nHost: lb\r\nContent-Type: application/zip\r\n"
            b"Content-Length: 67108865\r\n\r\n"
        )
        answer = s.recv(65536).decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413") and "application/problem+json" in head, head
    assert json.loads(body)["detail"] == "the request body is over 67108864 bytes"


def test_a_replica_killed_under_load_costs_no_failed_requests(cluster: Cluster) -> None:
    lb = cluster.lb
    seeds = range(8)
    expected = {}
    for seed in seeds:
        r = httpx.post(
            f"{cluster.replicas[1].url}/v1/sample",
            json={"model": "tiny-cgan", "seed": seed, "format": "npy"},
        )
        expected[seed] = r.content
    counts: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client(offset: int) -> None:
        with httpx.Client(base_url=lb.url, timeout=30) as c:
            i = offset
            while not stop.is_set():
                i += 1
                seed = i % len(seeds)
                for attempt in ("first", "retried"):
                    try:
                        if i % 2:
                            r = c.get("/v1/models/tiny-cgan")
                            ok = r.status_code == 200 and r.json()["name"] == "tiny-cgan"
                        else:
                            body = {"model": "tiny-cgan", "seed": seed, "format": "npy"}
                            r = c.post("/v1/sample", json=body)
                            ok = r.status_code == 200 and r.content == expected[seed]
                        why = f"{r.request.method} {r.status_code}"
                    except httpx.TransportError as e:
                        ok, why = False, type(e).__name__
                    with lock:
                        counts[f"{attempt} {'ok' if ok else 'failed'}"] += 1
                        if not ok:
                            failures[why] += 1
                    if ok:
                        break
                    time.sleep(0.2)  # the client's one retry

    before = lb.row("BACKEND")
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(3)
    victim = cluster.replicas[0]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    killed = time.monotonic()
    with lock:
        served_before = counts["first ok"]
    while not lb.row("api1")["status"].startswith("DOWN"):
        assert time.monotonic() - killed < 30, lb.row("api1")
        time.sleep(0.05)
    marked_down = time.monotonic() - killed
    time.sleep(max(0.0, 4 - marked_down))
    stop.set()
    for t in threads:
        t.join()
    after = lb.row("BACKEND")
    retried = int(after["wretr"]) - int(before["wretr"])
    redispatched = int(after["wredis"]) - int(before["wredis"])
    print(
        f"\n{CLIENTS} clients through the LB: {counts['first ok'] + counts['first failed']}"
        f" requests ({served_before} before the kill); replica 1 SIGKILLed, marked down by the"
        f" LB {marked_down:.2f} s later; the LB retried {retried} and redispatched"
        f" {redispatched}; failed at the client: {counts['first failed']}, all retried by it"
        f" ({counts['retried ok']} ok, {counts['retried failed']} failed again): {dict(failures)}"
    )
    assert counts["retried failed"] == 0  # nothing failed beyond what a client retried once
    assert counts["first failed"] <= CLIENTS  # at most the requests in flight on the replica
    assert retried + redispatched > 0  # the kill was felt, and the LB sent requests again
    assert counts["first ok"] > served_before  # the load went on after the kill
