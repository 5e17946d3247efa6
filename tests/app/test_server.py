"""The real server: uvicorn in a child process, on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import numpy as np

from core.repository import Repository

from .helpers import npy


def _wait_for(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _republish(models_dir: Path, name: str, *, promote: bool = True) -> int:
    """Publish a copy of v1's artifacts as the next version, through the registry."""
    repo = Repository(models_dir)
    manifest = repo.manifest(name, 1).to_dict()
    with repo.staging(name) as staged:
        for file in manifest["artifacts"]:
            shutil.copy(repo.version_dir(name, 1) / file, staged / file)
        return repo.publish(staged, manifest, ["production"] if promote else []).version


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:  # the thread ended while we looked
            pass
    return found


def _descendants(pid: int) -> set[int]:
    """Every process under ``pid``: the forkserver, the engine processes, the resource tracker."""
    children = _children(pid)
    return children.union(*map(_descendants, children))


def _engines(server: int) -> set[int]:
    """The engine processes of the server: the children of its forkserver."""
    forkservers = [c for c in _children(server) if b"forkserver" in _cmdline(c)]
    return set().union(*map(_children, forkservers))


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _concurrent(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return list(await asyncio.gather(*(client.post("/v1/sample", json=b) for b in bodies)))


def test_concurrent_requests_are_batched_and_exact(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir), GAN_MAX_DELAY_MS="100")
    bodies = [{"model": "tiny-cgan", "seed": 500 + i, "format": "npy"} for i in range(16)]
    singles = asyncio.run(_concurrent(server.url, bodies))
    together = httpx.post(
        f"{server.url}/v1/sample",
        json={"model": "tiny-cgan", "seed": 500, "n": 16, "format": "npy"},
    )
    stacked = np.concatenate([npy(r) for r in singles])
    np.testing.assert_array_equal(stacked, npy(together))
    metrics = httpx.get(f"{server.url}/metrics").text
    count = _metric(metrics, 'gan_batch_size_count{model="tiny-cgan",role="generator"}')
    total = _metric(metrics, 'gan_batch_size_sum{model="tiny-cgan",role="generator"}')
    assert total == 16 + 16  # 16 singles, then one n=16
    assert count < 16 + 1, "16 concurrent requests should share engine calls"


def test_truncated_and_plain_requests_at_once_are_exact(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    # The runtime draws latents from seeds, with each row's own truncation threshold. No
    # response cache: each request alone must be drawn again, not answered from memory.
    server = start_server(
        GAN_MODELS_DIR=str(models_dir), GAN_MAX_DELAY_MS="100", GAN_RESPONSE_CACHE_BYTES="0"
    )
    thresholds = [0.5, 0.9, 1.5, None, None, 0.5, None, 0.3]
    bodies = [
        {"model": "tiny-cgan", "seed": 700 + 3 * i, "n": 3, "format": "npy"}
        | ({} if t is None else {"truncation": t})
        for i, t in enumerate(thresholds)
    ]
    together = asyncio.run(_concurrent(server.url, bodies))
    for body, response in zip(bodies, together, strict=True):
        alone = httpx.post(f"{server.url}/v1/sample", json=body)
        assert response.status_code == 200 and response.content == alone.content
    plain = {k: v for k, v in bodies[0].items() if k != "truncation"}
    assert httpx.post(f"{server.url}/v1/sample", json=plain).content != together[0].content


def test_batching_off_gives_the_same_bytes(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    on = start_server(GAN_MODELS_DIR=str(models_dir), GAN_RESPONSE_CACHE_BYTES="0")
    off = start_server(GAN_MODELS_DIR=str(models_dir), GAN_BATCHING="false")
    body = {"model": "tiny-gan", "seed": 7, "n": 9, "format": "npy"}
    a = httpx.post(f"{on.url}/v1/sample", json=body).content
    b = httpx.post(f"{off.url}/v1/sample", json=body).content
    assert a == b == httpx.post(f"{on.url}/v1/sample", json=body).content


def test_hot_reload_on_publish_and_alias_move(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))

    def served() -> str:
        r = httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-gan"})
        return r.headers["x-model-version"]

    assert served() == "1"
    assert _republish(models_dir, "tiny-gan") == 2
    _wait_for(lambda: served() == "2")
    Repository(models_dir).set_alias("tiny-gan", "production", 1)  # a rollback by another process
    _wait_for(lambda: served() == "1")
    metrics = httpx.get(f"{server.url}/metrics").text
    assert _metric(metrics, 'gan_model_reloads_total{model="tiny-gan"}') == 2


def test_a_corrupted_version_is_refused_and_the_old_one_keeps_serving(
    models_dir: Path,
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    repo = Repository(models_dir)
    version = _republish(models_dir, "tiny-gan", promote=False)
    onnx = repo.version_dir("tiny-gan", version) / "generator.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    repo.set_alias("tiny-gan", "production", version)

    def refused() -> bool:
        ready = httpx.get(f"{server.url}/readyz").json()["models"]["tiny-gan"]
        return ready["error"] is not None and "sha256" in ready["error"]

    _wait_for(refused)
    r = httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-gan"})
    assert r.status_code == 200 and r.headers["x-model-version"] == "1"
    explicit = httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-gan", "version": version})
    assert explicit.status_code == 500 and "sha256" in explicit.json()["detail"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert _metric(metrics, 'gan_model_load_failures_total{model="tiny-gan"}') == 1


def test_full_queue_answers_503_with_retry_after(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(
        GAN_MODELS_DIR=str(models_dir),
        GAN_QUEUE_SIZE="64",
        GAN_MAX_BATCH="64",
        GAN_MAX_DELAY_MS="0",
    )
    bodies = [{"model": "tiny-cgan", "seed": i, "n": 64, "format": "npy"} for i in range(24)]
    responses = asyncio.run(_concurrent(server.url, bodies))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def _metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in metrics")


def test_sigterm_lets_requests_in_flight_finish(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir), GAN_QUEUE_SIZE="65536")
    finished: list[float] = []

    async def scenario() -> tuple[float, list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

            async def one() -> httpx.Response:
                body = {"model": "tiny-cgan", "n": 1024, "format": "zip"}
                r = await client.post("/v1/sample", json=body)
                finished.append(time.monotonic())
                return r

            inflight = [asyncio.create_task(one()) for _ in range(8)]
            await asyncio.sleep(0.3)  # the requests are in the server, being generated
            server.proc.terminate()
            terminated = time.monotonic()
            return terminated, list(await asyncio.gather(*inflight))

    terminated, responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 8
    assert max(finished) > terminated, "no request was still in flight at SIGTERM"
    # uvicorn re-raises the signal it caught once shutdown is complete.
    assert server.proc.wait(timeout=30) in (0, -15)


def test_engine_processes_follow_reloads_and_die_with_the_server(
    models_dir: Path, start_server
) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    engines = _engines(server.proc.pid)
    assert len(engines) == 2  # tiny-gan v1 and tiny-cgan v1
    _republish(models_dir, "tiny-gan")
    _wait_for(
        lambda: (
            httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-gan"}).headers[
                "x-model-version"
            ]
            == "2"
        )
    )
    # The old version's process has exited; one new process serves v2.
    _wait_for(lambda: len(_engines(server.proc.pid)) == 2 and not all(map(_alive, engines)))
    everything = _descendants(server.proc.pid)
    os.kill(server.proc.pid, signal.SIGKILL)  # no shutdown runs: the children must notice alone
    server.proc.wait()
    _wait_for(lambda: not any(map(_alive, everything)))
