"""The Python client against the real server, and its retry loop against a stub network."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gan_client import (
    AsyncGanClient,
    GanClient,
    GanError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    RateLimitedError,
    UnreachableError,
)
from gan_client.calls import TERMINAL_STATES, Retry
from gan_client.events import JobEvent

from app.jobs.store import TERMINAL
from core import imaging, latent
from tests.app.helpers import TINY_JOB, npy


def test_sample_equals_a_direct_npy_call(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    direct = httpx.post(
        f"{server.url}/v1/sample",
        json={"model": "tiny-cgan", "seed": 11, "n": 5, "labels": [0, 3, 3, 9, 1], "format": "npy"},
    )
    with GanClient(server.url) as gan:
        images, labels = gan.sample(5, seed=11, labels=np.array([0, 3, 3, 9, 1]), model="tiny-cgan")
        plain, none = gan.sample(2, seed=4, model="tiny-gan", version="production")
        defaults, default_labels = gan.sample(3, seed=20, model="tiny-cgan")
        z = latent.latents([11, 12, 13, 14, 15], 8, "normal", None)  # the seeds' own latents
        chosen, _ = gan.sample(labels=[0, 3, 3, 9, 1], model="tiny-cgan", latents=z)
        manifest = gan.resolve("tiny-cgan")
    np.testing.assert_array_equal(chosen, npy(direct))
    np.testing.assert_array_equal(images, npy(direct))
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28, 1)
    assert labels is not None and labels.tolist() == [0, 3, 3, 9, 1]
    assert plain.shape == (2, 28, 28, 1) and none is None
    assert default_labels is not None and default_labels.tolist() == [0, 1, 2]  # seed mod 10
    assert (manifest["name"], manifest["version"], manifest["num_classes"]) == ("tiny-cgan", 1, 10)


def test_discriminate_matches_the_json_endpoint(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    with GanClient(server.url) as gan:
        images, labels = gan.sample(4, seed=2, model="tiny-cgan")
        assert labels is not None
        scores = gan.discriminate(images, labels=labels, model="tiny-cgan", version=1)
        one_label = gan.discriminate(images, labels=7, model="tiny-cgan")
        frames = gan.interpolate(from_seed=1, to_seed=2, steps=5, model="tiny-gan")
        between = gan.interpolate(
            from_latent=np.zeros(8), to_latent=np.ones(8), steps=3, label=4, model="tiny-cgan"
        )
        files = [imaging.encode_png(im) for im in images]
        decoded = gan.discriminate(files, labels=labels, model="tiny-cgan", version=1)
    pngs = [base64.b64encode(f).decode() for f in files]
    body = {"model": "tiny-cgan", "images": pngs, "labels": labels.tolist()}
    expected = httpx.post(f"{server.url}/v1/discriminate", json=body).json()["results"]
    np.testing.assert_allclose(
        np.array(scores), [[r["probability_real"], r["logit"]] for r in expected], rtol=1e-5
    )
    np.testing.assert_allclose(decoded, scores, rtol=1e-5)
    assert len(one_label) == 4 and all(0 < p < 1 for p, _ in one_label)
    assert frames.shape == (5, 28, 28, 1) and frames.dtype == np.uint8
    assert between.shape == (3, 28, 28, 1)


def test_errors_are_typed_and_carry_the_problem(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir), GAN_EMBEDDED_WORKER="false")
    with GanClient(server.url, retries=0) as gan:
        with pytest.raises(NotFoundError) as missing:
            gan.sample(model="nope")
        with pytest.raises(InvalidRequestError) as too_many:
            gan.sample(2000, model="tiny-gan")
        with pytest.raises(InvalidRequestError) as bad_body:
            gan.interpolate(to_seed=1, model="tiny-gan")  # no "from" endpoint
        with pytest.raises(NotFoundError):
            gan.model("nope")
        with pytest.raises(NotFoundError):
            gan.job("0123456789abcdef")
        names = [m["name"] for m in gan.models()]
        detail = gan.model("tiny-gan")
    assert missing.value.status == 404 and missing.value.field == "model"
    assert "no model named 'nope'" in missing.value.detail
    assert missing.value.problem["title"] == "not found"
    assert too_many.value.status == 413 and too_many.value.field == "n"
    assert "over the limit" in too_many.value.detail
    assert bad_body.value.status == 422 and bad_body.value.field == "from"
    assert names == ["tiny-cgan", "tiny-gan"]
    assert detail["serving_version"] == 1 and detail["versions"][0]["name"] == "tiny-gan"


def test_jobs_submit_cancel_and_wait(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    # No consumer: a submitted job stays queued, so the lifecycle runs without any training.
    server = start_server(
        GAN_MODELS_DIR=str(models_dir), GAN_EMBEDDED_WORKER="false", GAN_API_KEY="k3y"
    )
    with GanClient(server.url, api_key="k3y") as gan:
        job = gan.submit_job("tiny-cgan", overrides={"max_steps": 3}, promote="never")
        assert job["state"] == "queued" and gan.job(job["id"])["overrides"] == {"max_steps": 3}
        assert gan.jobs()["total"] == 1 and gan.jobs(state="running")["jobs"] == []
        with pytest.raises(TimeoutError):
            gan.wait(job["id"], poll=0.05, timeout=0.2)
        assert gan.cancel_job(job["id"])["state"] == "cancelled"
        seen: list[str] = []
        final = gan.wait(
            job["id"], poll=0.05, timeout=10, progress=lambda r: seen.append(r["state"])
        )
        with pytest.raises(InvalidRequestError) as bad:
            gan.submit_job("tiny-cgan", overrides={"max_steps": 0})
    assert final["state"] == "cancelled" and seen == ["cancelled"]
    assert bad.value.field is not None and bad.value.field.startswith("overrides.")
    with GanClient(server.url) as anonymous, pytest.raises(GanError) as denied:
        anonymous.submit_job("tiny-cgan")
    assert denied.value.status == 401 and type(denied.value).__name__ == "AuthError"


def test_a_job_on_uploaded_data_streams_its_events_and_is_promoted_by_alias(  # type: ignore[no-untyped-def]
    models_dir: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir), GAN_API_KEY="k3y")
    noise = np.random.default_rng(0).integers(0, 256, (32, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "noise.npz", images=noise, labels=np.arange(32) % 2)
    for i, label in enumerate(["cat", "cat", "dog"]):
        (tmp_path / "pets" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "pets" / label / f"{i}.png").write_bytes(
            imaging.encode_png(noise[i, ..., None])
        )
    with GanClient(server.url, api_key="k3y") as gan:
        noisy = gan.upload_dataset(tmp_path / "noise.npz", name="noise")
        pets = gan.upload_dataset(tmp_path / "pets")  # a folder, zipped by the client
        assert [d["id"] for d in gan.datasets()] == [pets["id"], noisy["id"]]
        assert (pets["name"], pets["class_names"], pets["size"]) == ("pets.zip", ["cat", "dog"], 3)
        job = gan.submit_job(
            "tiny-cgan",
            overrides={**TINY_JOB, "max_steps": 4},
            dataset=noisy["id"],
            promote="never",
        )
        live = list(gan.events(job["id"], timeout=120))
        final = gan.job(job["id"])
        assert gan.wait(job["id"], timeout=10) == final  # a finished job: its events replayed
        replayed = list(gan.events(job["id"]))
        log = gan.job_log(job["id"])
        answer = httpx.get(f"{server.url}/v1/jobs/{job['id']}/events").content
        with cut_once(server.port, after=len(answer) // 2) as port:
            with GanClient(f"http://127.0.0.1:{port}") as flaky:
                resumed = list(flaky.events(job["id"]))
        serving = gan.resolve("tiny-cgan")["version"]
        async_answers = asyncio.run(_async_follow(server.url, job["id"]))
        assert gan.set_alias("tiny-cgan", "production", 2) == {
            "name": "tiny-cgan",
            "alias": "production",
            "version": 2,
        }
        promoted = gan.resolve("tiny-cgan")

    states = [data["state"] for kind, data in live if kind == "state"]
    assert states[-2:] == ["running", "succeeded"] and live[-1] == ("state", final)
    training = [(kind, data) for kind, data in live if kind != "state"]
    assert [kind for kind, _ in training] == [
        "start",
        "progress",
        "progress",
        "evaluation",
        "completed",
    ]
    assert [data["step"] for _, data in training] == [0, 2, 4, 4, 4]
    logged = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [data for _, data in training] == logged[: len(training)]
    assert replayed == resumed == [*training, ("state", final)]
    assert final["published_version"] == 2 and final["promoted"] is False and serving == 1
    assert (promoted["version"], promoted["num_classes"]) == (2, 2)  # trained on the upload
    assert async_answers == (replayed, final, log, 2)


async def _async_follow(url: str, job_id: str) -> tuple[list[JobEvent], dict[str, Any], str, int]:
    async with AsyncGanClient(url, api_key="k3y") as gan:
        events = [event async for event in gan.events(job_id)]
        await gan.set_alias("tiny-cgan", "canary", 2)
        canary = await gan.resolve("tiny-cgan", "canary")
        return events, await gan.wait(job_id), await gan.job_log(job_id), canary["version"]


@contextmanager
def cut_once(port: int, after: int) -> Iterator[int]:
    """Yields the port of a TCP relay to ``port`` that breaks its first connection after
    ``after`` bytes of the answer, as a failing network would."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections = 0

    def pipe(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(min(4096, limit - sent) if limit else 4096):
                dst.sendall(data)
                sent += len(data)
                if limit is not None and sent >= limit:
                    break
        except OSError:
            pass
        for end in (src, dst):
            # shutdown, not only close: the other direction's thread may be blocked reading it
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def serve() -> None:
        nonlocal connections
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            connections += 1
            upstream = socket.create_connection(("127.0.0.1", port))
            limit = after if connections == 1 else None
            threading.Thread(target=pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client, limit), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        listener.close()
        thread.join()
    assert connections == 2


def test_async_client_gives_the_same_answers(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))

    async def run() -> tuple[Any, ...]:
        async with AsyncGanClient(server.url) as gan:
            (a, la), (b, lb) = await asyncio.gather(
                gan.sample(3, seed=5, model="tiny-cgan"), gan.sample(2, seed=8, model="tiny-cgan")
            )
            assert la is not None and lb is not None
            scores = await gan.discriminate(a, labels=la, model="tiny-cgan")
            frames = await gan.interpolate(from_seed=1, to_seed=2, steps=4, model="tiny-gan")
            png = await gan.sample_png(4, seed=1, model="tiny-gan", cols=2)
            strip = await gan.interpolate_png(from_seed=1, to_seed=2, steps=4, model="tiny-gan")
            with pytest.raises(NotFoundError):
                await gan.sample(model="nope")
            return a, la, b, scores, frames, png, strip, await gan.models(), await gan.resolve()

    a, la, b, scores, frames, png, strip, models, manifest = asyncio.run(run())
    with GanClient(server.url) as gan:
        s, ls = gan.sample(5, seed=5, model="tiny-cgan")
        np.testing.assert_array_equal(np.concatenate([a, b]), s)
        assert ls is not None and la.tolist() == ls[:3].tolist()
        np.testing.assert_allclose(scores, gan.discriminate(a, labels=la, model="tiny-cgan"))
        np.testing.assert_array_equal(
            frames, gan.interpolate(from_seed=1, to_seed=2, steps=4, model="tiny-gan")
        )
        assert png == gan.sample_png(4, seed=1, model="tiny-gan", cols=2)
        assert strip == gan.interpolate_png(from_seed=1, to_seed=2, steps=4, model="tiny-gan")
        assert models == gan.models() and manifest == gan.resolve()


def test_the_client_loads_neither_torch_nor_fastapi() -> None:
    code = "import sys, gan_client.client; print(sorted({'torch', 'fastapi'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_terminal_states_match_the_server() -> None:
    assert TERMINAL_STATES == TERMINAL


# --- retries, against a stub of the network -------------------------------------------------

Reply = tuple[int, dict[str, str], bytes] | None  # None: drop the connection without answering


@dataclass
class Stub:
    url: str
    hits: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


@contextmanager
def stub(*replies: Reply) -> Iterator[Stub]:
    """An HTTP server answering with ``replies`` in turn, then the last one forever."""
    state = Stub("")

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            state.bodies.append(self.rfile.read(int(self.headers.get("content-length") or 0)))
            state.hits.append(self.path)
            reply = replies[min(len(state.hits), len(replies)) - 1]
            if reply is None:
                self.close_connection = True
                return
            status, headers, body = reply
            self.send_response(status)
            for key, value in {**headers, "content-length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _npy_reply(labels: str = "1,2") -> Reply:
    buf = io.BytesIO()
    np.save(buf, np.full((2, 4, 4, 1), 9, dtype=np.uint8))
    return 200, {"content-type": "application/x-npy", "x-labels": labels}, buf.getvalue()


def _problem(status: int, detail: str, **headers: str) -> Reply:
    body = {"type": "urn:x", "title": "t", "status": status, "detail": detail}
    return (
        status,
        {"content-type": "application/problem+json", **headers},
        json.dumps(body).encode(),
    )


BUSY = _problem(503, "queue full", **{"retry-after": "0"})


def test_503_is_retried_until_it_succeeds() -> None:
    with stub(BUSY, BUSY, _npy_reply()) as net, GanClient(net.url) as gan:
        images, labels = gan.sample(2, seed=1)
    assert len(net.hits) == 3
    assert images.shape == (2, 4, 4, 1) and labels is not None and labels.tolist() == [1, 2]


def test_503_after_every_retry_is_overloaded() -> None:
    with stub(BUSY) as net, GanClient(net.url, retries=2) as gan:
        with pytest.raises(OverloadedError) as e:
            gan.sample()
    assert len(net.hits) == 3 and e.value.status == 503 and e.value.detail == "queue full"


def test_4xx_is_not_retried() -> None:
    with stub(_problem(404, "gone"), _npy_reply()) as net, GanClient(net.url) as gan:
        with pytest.raises(NotFoundError):
            gan.sample()
    assert len(net.hits) == 1
    with stub(_problem(429, "later"), _npy_reply()) as net, GanClient(net.url) as gan:
        with pytest.raises(RateLimitedError):
            gan.submit_job("m")
    assert len(net.hits) == 1


def test_retry_after_is_honoured() -> None:
    wait = _problem(503, "queue full", **{"retry-after": "1"})
    with stub(wait, _npy_reply()) as net, GanClient(net.url) as gan:
        start = time.monotonic()
        gan.sample()
    assert time.monotonic() - start >= 1.0 and len(net.hits) == 2


def test_dropped_connections_retry_only_what_is_safe_to_repeat() -> None:
    with stub(None, _npy_reply()) as net, GanClient(net.url) as gan:
        gan.sample(2)  # sampling is a pure function of the request: repeating it is harmless
    assert len(net.hits) == 2
    with stub(None, _npy_reply()) as net, GanClient(net.url) as gan:
        with pytest.raises(UnreachableError) as e:
            gan.submit_job("m")  # a second copy could queue a second job
    assert len(net.hits) == 1 and e.value.status is None


def test_refused_connections_are_retried_then_unreachable() -> None:
    with stub(_npy_reply()) as net:
        url = net.url  # a port nobody listens on once the stub is gone
    with GanClient(url, retries=2) as gan, pytest.raises(UnreachableError) as e:
        gan.models()
    assert isinstance(e.value.__cause__, httpx.ConnectError)


def test_async_client_retries_the_same_way() -> None:
    async def run(url: str) -> np.ndarray:
        async with AsyncGanClient(url) as gan:
            images, _ = await gan.sample(2)
            with pytest.raises(InvalidRequestError):
                await gan.sample(2)
            return images

    with stub(BUSY, BUSY, _npy_reply(), _problem(422, "bad")) as net:
        images = asyncio.run(run(net.url))
    assert images.shape == (2, 4, 4, 1) and len(net.hits) == 4


def test_promote_on_is_sent_only_when_given() -> None:
    queued = (202, {"content-type": "application/json"}, b'{"id": "j", "state": "queued"}')
    with stub(queued) as net, GanClient(net.url) as gan:
        gan.submit_job("m")
        gan.submit_job("m", promote_on=["fid"])
    first, second = (json.loads(body) for body in net.bodies)
    assert "promote_on" not in first and second["promote_on"] == ["fid"]


def test_wait_polls_a_server_without_the_event_stream() -> None:
    record = json.dumps({"id": "j", "state": "succeeded"}).encode()
    done = (200, {"content-type": "application/json"}, record)
    with stub(_problem(404, "no route"), done) as net, GanClient(net.url) as gan:
        assert gan.wait("j")["state"] == "succeeded"
    assert net.hits == ["/v1/jobs/j/events", "/v1/jobs/j"]

    async def wait(url: str) -> dict[str, Any]:
        async with AsyncGanClient(url) as gan:
            return await gan.wait("j")

    with stub(_problem(405, "method not allowed"), done) as net:
        assert asyncio.run(wait(net.url))["state"] == "succeeded"
    assert net.hits == ["/v1/jobs/j/events", "/v1/jobs/j"]


def test_backoff_grows_with_jitter_and_stays_bounded() -> None:
    retry = Retry(retries=5, base_s=0.1, cap_s=1.0)
    for attempt in range(8):
        ceiling = min(1.0, 0.1 * 2**attempt)
        delays = [retry.delay(attempt, None) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert 1.0 <= retry.delay(0, 30) <= 1.1  # Retry-After, bounded by cap_s
    assert 0.5 <= retry.delay(0, 0.5) <= 0.6


def test_errors_survive_pickling() -> None:
    error = InvalidRequestError(413, "limit exceeded", "too big", "n", {"status": 413})
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.field, copy.detail, str(copy)) == (413, "n", "too big", str(error))
