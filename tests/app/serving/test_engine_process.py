"""Engine processes give what the engines give in this process, and survive dying or hanging."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from app.main import create_app
from app.serving import engine_process
from app.serving.engine_process import ProcessRuntime
from app.serving.runtime import Engines
from app.settings import Settings
from core.errors import IntegrityError, NotReady
from core.repository import MANIFEST, Repository
from tests.conftest import app_settings

SETTINGS = Settings(device="cpu")


def _version(models_dir: Path, name: str) -> tuple[Path, object]:
    repo = Repository(models_dir)
    return repo.version_dir(name, 1), repo.verify(name, 1)


@pytest.fixture
def cgan(models_dir: Path) -> Iterator[tuple[Engines, ProcessRuntime, list[int]]]:
    folder, manifest = _version(models_dir, "tiny-cgan")
    restarts: list[int] = []
    local = Engines.load(folder, manifest, SETTINGS)  # type: ignore[arg-type]
    remote = ProcessRuntime(folder, manifest, SETTINGS, lambda: restarts.append(1))  # type: ignore[arg-type]
    yield local, remote, restarts
    remote.close()


def _kill(runtime: ProcessRuntime) -> None:
    process = runtime._child.process
    os.kill(process.pid, signal.SIGKILL)  # type: ignore[arg-type]
    process.join(10)  # until the kernel has closed its end of the sockets


def test_the_child_process_gives_the_same_pixels_and_logits(
    cgan: tuple[Engines, ProcessRuntime, list[int]],
) -> None:
    local, remote, _ = cgan
    assert remote.pid != os.getpid() and remote.device == "cpu" and remote.has_discriminator
    seeds = {"seed": np.arange(5, dtype=np.int64), "label": np.arange(5, dtype=np.int64)}
    truncated = {**seeds, "truncation": np.array([0.5, 1.0, 0.5, 2.0, 0.3])}
    z = {"z": np.ones((2, 8), np.float32), "label": np.array([3, 4])}
    # Messages larger than one read or one write each way: 96 KB of z in, 2.4 MB of pixels out.
    rows = np.random.default_rng(0).standard_normal((3000, 8), dtype=np.float32)
    big = {"z": rows, "label": np.arange(3000, dtype=np.int64) % 10}
    for inputs in (seeds, truncated, z, big):
        pixels = remote.generate(inputs)
        assert pixels.dtype == np.uint8 and pixels.shape == (len(inputs["label"]), 28, 28, 1)
        np.testing.assert_array_equal(pixels, local.generate(inputs))
    images = np.linspace(-1, 1, 3 * 784, dtype=np.float32).reshape(3, 1, 28, 28)
    feeds = {"image": images, "label": np.array([0, 5, 9])}
    np.testing.assert_array_equal(remote.discriminate(feeds), local.discriminate(feeds))


def test_a_message_arrives_whole_however_the_stream_splits_it() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        message = {"z": np.arange(50_000, dtype=np.float32)}  # 200 KB: more than one read
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        framed = struct.pack("<Q", len(payload)) + payload
        pieces = [framed[:3], framed[3:8], framed[8:1000], framed[1000:]]

        def write() -> None:
            for piece in pieces:  # the reader sees each piece apart: header and body split
                theirs.sendall(piece)
                time.sleep(0.05)

        writer = threading.Thread(target=write)
        writer.start()
        np.testing.assert_array_equal(engine_process._recv(ours)["z"], message["z"])
        writer.join()
        theirs.sendall(framed[:100])  # the peer dies mid-message
        theirs.close()
        with pytest.raises(EOFError):
            engine_process._recv(ours)


def test_an_error_in_the_child_reaches_the_caller_and_the_child_serves_on(
    cgan: tuple[Engines, ProcessRuntime, list[int]],
) -> None:
    _, remote, restarts = cgan
    with pytest.raises(ValueError, match="out of range"):
        remote.generate({"seed": np.array([-1]), "label": np.array([0])})
    with pytest.raises(InvalidArgument, match="int64"):  # ONNX Runtime's own error, pickled
        remote.generate({"seed": np.array([1]), "label": np.array([0.5])})
    pid = remote.pid
    assert remote.generate({"seed": np.array([1]), "label": np.array([0])}).shape[0] == 1
    assert remote.pid == pid and restarts == []


def test_a_killed_child_answers_503_once_and_is_started_again(
    cgan: tuple[Engines, ProcessRuntime, list[int]],
) -> None:
    local, remote, restarts = cgan
    inputs = {"seed": np.arange(3, dtype=np.int64), "label": np.array([1, 2, 3])}
    pid = remote.pid
    _kill(remote)
    with pytest.raises(NotReady, match="killed by signal 9"):
        remote.generate(inputs)
    np.testing.assert_array_equal(remote.generate(inputs), local.generate(inputs))
    assert remote.pid != pid and restarts == [1]
    images = np.zeros((1, 1, 28, 28), np.float32)
    assert remote.discriminate({"image": images, "label": np.array([0])}).shape == (1, 1)


def test_a_hung_child_is_killed_after_the_request_timeout_and_replaced(models_dir: Path) -> None:
    folder, manifest = _version(models_dir, "tiny-gan")
    restarts: list[int] = []
    settings = Settings(device="cpu", request_timeout_s=1)
    remote = ProcessRuntime(folder, manifest, settings, lambda: restarts.append(1))  # type: ignore[arg-type]
    try:
        inputs = {"seed": np.arange(2, dtype=np.int64)}
        expected = remote.generate(inputs)
        hung = remote._child.process
        os.kill(hung.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        with pytest.raises(NotReady, match="did not answer within 1 s"):
            remote.generate(inputs)
        assert not hung.is_alive() and hung.exitcode == -signal.SIGKILL
        np.testing.assert_array_equal(remote.generate(inputs), expected)
        assert restarts == [1]
    finally:
        remote.close()


def test_a_batch_too_large_for_a_hung_childs_buffer_times_out_too(models_dir: Path) -> None:
    folder, manifest = _version(models_dir, "tiny-cgan")
    remote = ProcessRuntime(folder, manifest, Settings(device="cpu", request_timeout_s=1))  # type: ignore[arg-type]
    try:
        os.kill(remote._child.process.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        images = np.zeros((1000, 1, 28, 28), np.float32)  # 3 MB: the write itself blocks
        with pytest.raises(NotReady, match="did not answer within 1 s"):
            remote.discriminate({"image": images, "label": np.zeros(1000, np.int64)})
        assert remote.discriminate({"image": images[:2], "label": np.array([0, 1])}).shape == (2, 1)
    finally:
        remote.close()


@pytest.mark.parametrize("timeout", [1e-9, 1e300])
def test_any_request_timeout_the_settings_allow_is_a_timeout(
    models_dir: Path, timeout: float
) -> None:
    folder, manifest = _version(models_dir, "tiny-gan")
    remote = ProcessRuntime(folder, manifest, Settings(device="cpu", request_timeout_s=timeout))  # type: ignore[arg-type]
    try:
        sock = remote._child.socks["generator"]
        timeval = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
        assert timeval != (0, 0)  # a zero timeval would mean none at all
        if timeout > 1:
            assert remote.generate({"seed": np.arange(2, dtype=np.int64)}).shape[0] == 2
    finally:
        remote.close()


def test_a_child_is_not_restarted_on_files_changed_since_the_load(
    cgan: tuple[Engines, ProcessRuntime, list[int]], models_dir: Path
) -> None:
    _, remote, restarts = cgan
    inputs = {"seed": np.array([1]), "label": np.array([1])}
    (models_dir / "tiny-cgan" / "1" / "generator.onnx").write_bytes(b"not the verified graph")
    assert remote.generate(inputs).shape[0] == 1  # the running child serves what it loaded
    _kill(remote)
    with pytest.raises(NotReady, match="restarted"):
        remote.generate(inputs)
    for _ in range(2):  # and every later call says why, rather than loading the new bytes
        with pytest.raises(NotReady, match="generator.onnx changed on disk"):
            remote.generate(inputs)
    assert restarts == []


def test_a_version_that_fails_in_the_child_is_refused_at_load(models_dir: Path) -> None:
    folder, _ = _version(models_dir, "tiny-gan")
    manifest_file = folder / MANIFEST
    doc = json.loads(manifest_file.read_text())
    doc["image_shape"] = [1, 32, 32]  # the graph makes 28 x 28
    manifest_file.write_text(json.dumps(doc))
    manifest = Repository(models_dir).verify("tiny-gan", 1)
    with pytest.raises(IntegrityError, match="the manifest says"):
        ProcessRuntime(folder, manifest, SETTINGS)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("engine-")]


def test_close_stops_the_child(models_dir: Path) -> None:
    folder, manifest = _version(models_dir, "tiny-gan")
    runtime = ProcessRuntime(folder, manifest, SETTINGS)  # type: ignore[arg-type]
    child = runtime._child.process
    assert child.is_alive()
    runtime.close()
    assert not child.is_alive() and child.exitcode == 0  # it read EOF and returned


def _engines() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("engine-")]


def test_the_service_survives_a_killed_engine_process(models_dir: Path) -> None:
    body = {"model": "tiny-gan", "seed": 11, "n": 4, "format": "npy"}
    # No response cache: the same request again must reach the engine.
    with TestClient(create_app(app_settings(models_dir, response_cache_bytes=0))) as client:
        before = client.post("/v1/sample", json=body)
        assert before.status_code == 200
        engines = _engines()
        assert sorted(p.name for p in engines) == ["engine-tiny-cgan-v1", "engine-tiny-gan-v1"]
        victim = next(p for p in engines if p.name == "engine-tiny-gan-v1")
        os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        victim.join(10)
        failed = client.post("/v1/sample", json=body)
        assert failed.status_code == 503 and failed.headers["retry-after"] == "1"
        assert "restarted, retry" in failed.json()["detail"]
        after = client.post("/v1/sample", json=body)
        assert after.status_code == 200 and after.content == before.content
        metrics = client.get("/metrics").text
        assert 'gan_engine_restarts_total{model="tiny-gan"} 1.0' in metrics
    assert _engines() == []  # the app's shutdown stopped them


def test_where_no_process_can_start_the_version_is_not_ready(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = multiprocessing.get_context("forkserver")

    class Refused(context.Process):  # type: ignore[name-defined,misc]
        def start(self) -> None:
            raise OSError(errno.EAGAIN, "fork refused")

    monkeypatch.setattr(
        engine_process, "_context", lambda: SimpleNamespace(Pipe=context.Pipe, Process=Refused)
    )
    folder, manifest = _version(models_dir, "tiny-gan")
    with pytest.raises(
        NotReady, match=r"cannot start an engine process: \[Errno 11\] fork refused"
    ):
        ProcessRuntime(folder, manifest, SETTINGS)  # type: ignore[arg-type]
