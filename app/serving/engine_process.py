"""Engine processes: each loaded version's engines run in a child process of their own.

Kept against engines in the server process by measurement (README, Engine placement; ``make
bench``, 2-CPU machine, 2026-12-04): n=1 requests under 32 and 64 clients reached 0.68 / 0.74
of /healthz here, against 0.49 / 0.48 with the engines in the server; big requests are as fast
either way, on a CPU and on a GPU. In the server, the batch threads would hold the GIL to draw
latents and convert pixels, and retake it after every engine call, each time waiting for a
busy event loop; here a batch costs the server one socket write and one read. The price:
about 11 MB more per loaded version on a CPU, and on a GPU a CUDA context per version (about
740 MiB on an H200).

A child that dies, or does not answer within the request timeout, is started again on the next
call, after its files are checked against the manifest once more; the call that found it dead
is answered 503.

    >>> runtime = ProcessRuntime(folder, manifest, settings)  # loads, warms up, or raises
    >>> pixels = runtime.generate({"seed": np.array([7, 8])})     # uint8 [2, H, W, C]
    >>> runtime.close()
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import pickle
import signal
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.serving.runtime import Engines, Inputs, has_discriminator
from app.settings import Settings
from core.errors import ApiError, IntegrityError, NotReady
from core.repository import Manifest, sha256_file

log = logging.getLogger(__name__)


# --- the child process ------------------------------------------------------------------------


@functools.cache
def _context() -> multiprocessing.context.BaseContext:
    # forkserver: children fork from a clean process that has imported this module and ONNX
    # Runtime once, so a version starts in milliseconds of forking rather than seconds of
    # imports, and never inherits the server's threads (forking those is unsafe).
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "onnxruntime"])
    return context


def _child_main(
    socks: dict[str, socket.socket], folder: Path, manifest: Manifest, settings: Settings
) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the server's shutdown stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        runtime = Engines.load(folder, manifest, settings)
    except BaseException as e:
        _send(socks["generator"], ("error", _portable(e)))
        return
    _send(socks["generator"], ("ready", runtime.device))
    if runtime.has_discriminator:
        threading.Thread(
            target=_serve, args=(socks["discriminator"], runtime.discriminate), daemon=True
        ).start()
    _serve(socks["generator"], runtime.generate)  # returns when the server closes the socket


def _serve(sock: socket.socket, run: Callable[[Inputs], np.ndarray]) -> None:
    while True:
        reply: tuple[str, np.ndarray | BaseException]
        try:
            inputs = _recv(sock)
        except (EOFError, OSError):  # the server closed the socket, or died
            return
        try:
            reply = ("ok", run(inputs))
        except Exception as e:  # the caller's batch gets it; the child serves on
            reply = ("error", _portable(e))
        try:
            _send(sock, reply)
        except OSError:
            return


# Messages are pickles behind an 8-byte length, over a blocking socket pair. The server's end
# has kernel timeouts (SO_RCVTIMEO, SO_SNDTIMEO) rather than a poll before each read, so a batch
# costs its batcher thread one write and one read: each system call lets go of the GIL, and
# taking it back means waiting for the event loop to let go (README, Benchmarks). Each socket
# carries one exchange at a time (a batcher thread per role), so a read never meets the bytes
# of a next message.
_HEADER = struct.Struct("<Q")
_SMALL = 1 << 16  # a message this size goes out in one write, header and all


def _send(sock: socket.socket, message: object) -> None:
    """One message; TimeoutError past SO_SNDTIMEO (a stuck reader, a full buffer)."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    header = _HEADER.pack(len(payload))
    try:
        if len(payload) <= _SMALL:
            sock.sendall(header + payload)
        else:  # no copy of a large payload just to prepend 8 bytes
            sock.sendall(header)
            sock.sendall(payload)
    except BlockingIOError:
        raise TimeoutError from None


def _recv(sock: socket.socket) -> Any:
    """One message; EOFError when the other end closed, TimeoutError past SO_RCVTIMEO."""
    try:
        data = _recv_some(sock, _SMALL + _HEADER.size)  # most messages: all of it, in one read
        while len(data) < _HEADER.size:
            data += _recv_some(sock, _HEADER.size - len(data))
        (size,) = _HEADER.unpack_from(data)
        if len(data) - _HEADER.size == size:
            return pickle.loads(memoryview(data)[_HEADER.size :])
        buffer = bytearray(size)
        got = len(data) - _HEADER.size
        buffer[:got] = memoryview(data)[_HEADER.size :]
        view = memoryview(buffer)
        while got < size:
            read = sock.recv_into(view[got:])
            if read == 0:
                raise EOFError
            got += read
        return pickle.loads(buffer)
    except BlockingIOError:  # SO_RCVTIMEO: nothing came in time
        raise TimeoutError from None


def _recv_some(sock: socket.socket, most: int) -> bytes:
    data = sock.recv(most)
    if not data:
        raise EOFError
    return data


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling (ours do), else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")
    return e


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    socks: dict[str, socket.socket]
    device: str
    dead: bool = False

    @classmethod
    def start(cls, folder: Path, manifest: Manifest, settings: Settings) -> _Child:
        context = _context()
        pairs = {role: socket.socketpair() for role in ("generator", "discriminator")}
        theirs = {role: pair[1] for role, pair in pairs.items()}
        process = context.Process(  # type: ignore[attr-defined]
            target=_child_main,
            args=(theirs, folder, manifest, settings),
            name=f"engine-{manifest.name}-v{manifest.version}",
            daemon=True,  # never outlives the server, however it exits
        )
        try:
            process.start()
        except OSError as e:
            for pair in pairs.values():
                for sock in pair:
                    sock.close()
            raise NotReady(f"cannot start an engine process: {e}") from e
        child = cls(process, {role: pair[0] for role, pair in pairs.items()}, "")
        for sock in theirs.values():
            sock.close()  # so that our reads see EOF when the child dies
        try:
            status, value = _recv(child.socks["generator"])  # loading takes what it takes
        except EOFError:
            child.stop()
            raise IntegrityError(
                f"{manifest.name} v{manifest.version}: the engine process {child.exit()} "
                "while loading"
            ) from None
        if status == "error":
            child.stop()
            raise value
        child.device = value
        # No batch takes this long: a read that times out finds the child stuck.
        # A zero timeval would mean no timeout at all: never less than a microsecond, and never
        # more than a C long holds on any platform (68 years).
        timeout = min(settings.request_timeout_s, 2**31 - 1)
        seconds, micros = divmod(max(1, round(timeout * 1e6)), 1_000_000)
        timeval = struct.pack("ll", seconds, micros)
        for sock in child.socks.values():
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):  # a large batch fills
                sock.setsockopt(socket.SOL_SOCKET, option, timeval)  # the buffer, too
        return child

    def exit(self) -> str:
        """How the process ended, in words."""
        self.process.join(1)
        code = self.process.exitcode
        if code is None:
            return "stopped answering"
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def kill(self) -> None:
        self.process.kill()
        self.process.join()

    def stop(self) -> None:
        for sock in self.socks.values():
            sock.close()  # the child reads EOF and returns
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class ProcessRuntime:
    """The engines in a child process (module docstring). Thread-safe for one caller per role."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        settings: Settings,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self.manifest = manifest
        self._name = f"{manifest.name} v{manifest.version}"  # for logs and errors
        self._start = functools.partial(_Child.start, folder, manifest, settings)
        self._folder = folder
        self._on_restart = on_restart
        self._timeout = settings.request_timeout_s
        self._lock = threading.Lock()  # one restart at a time, and none after close
        self._closed = False
        self._child = self._start()
        self.device = self._child.device
        self.has_discriminator = has_discriminator(manifest)

    @property
    def pid(self) -> int | None:
        return self._child.process.pid

    def generate(self, inputs: Inputs) -> np.ndarray:
        return self._call("generator", inputs)

    def discriminate(self, inputs: Inputs) -> np.ndarray:
        return self._call("discriminator", inputs)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._child.stop()

    def _call(self, role: str, inputs: Inputs) -> np.ndarray:
        child = self._live_child()
        sock = child.socks[role]
        name = self._name
        try:
            _send(sock, inputs)
            status, value = _recv(sock)
        except TimeoutError:
            child.dead = True
            child.kill()
            log.error("%s: the engine process hung; killed it, starting another", name)
            raise NotReady(
                f"the engine process of {name} did not answer within {self._timeout:g} s; "
                "it is being restarted, retry"
            ) from None
        except (EOFError, OSError):
            child.dead = True
            how = child.exit()
            log.error("%s: the engine process %s; starting another", name, how)
            raise NotReady(
                f"the engine process of {name} {how} during this request; it is being "
                "restarted, retry"
            ) from None
        if status == "error":
            raise value
        result: np.ndarray = value
        return result

    def _live_child(self) -> _Child:
        child = self._child
        if not child.dead:
            return child
        with self._lock:
            if self._closed:
                raise NotReady(f"{self._name} is shutting down")
            if self._child is child:  # not restarted yet by the other role's thread
                child.stop()
                self._child = self._restart()
            return self._child

    def _restart(self) -> _Child:
        name = self._name
        try:
            for file, expected in self.manifest.artifacts.items():
                # Never start on files other than the ones verified at load.
                if sha256_file(self._folder / file) != expected:
                    raise IntegrityError(f"{file} changed on disk since it was loaded")
            child = self._start()
        except (ApiError, OSError) as e:
            detail = e.detail if isinstance(e, ApiError) else str(e)
            log.error("%s: cannot restart the engine process: %s", name, detail)
            raise NotReady(f"the engine process of {name} cannot restart: {detail}") from e
        self._on_restart()
        log.info("%s: engine process restarted (pid %s)", name, child.process.pid)
        return child
