"""make image-test: a private Docker engine, the images built on it, and their containers.

The engine is dockerd from Debian's docker.io, started here as root with no bridge network
(every build and container on host networking, so all traffic stays on loopback) and stopped by
its PID at the end. Its state lives in IMAGE_TEST_ROOT (default /var/tmp/gan-docker), which
outlives the run, so the base image and the build cache carry over to the next run.

No image registry is needed: the base is Debian bookworm made by mmdebstrap and imported. This
machine's CA bundle reaches pip in the build as a BuildKit secret (stored in no layer), and the
CPU torch wheels in TORCH_WHEELS (default /opt/wheels), when there are any, are served on
loopback as the build's torch index; without them the build takes PyTorch's CPU index.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT

STATE = Path(os.environ.get("IMAGE_TEST_ROOT", "/var/tmp/gan-docker"))
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")  # docker.io's CLI: BuildKit without buildx
TORCH_WHEELS = Path(os.environ.get("TORCH_WHEELS", "/opt/wheels"))
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Database 11: the other suites use 12 to 15 (tests/app/jobs, tests/scale).
REDIS_URL = os.environ.get("IMAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
BASE = "gan-serve-base:bookworm"
MMDEBSTRAP = [
    "mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,tini",
    "--aptopt=APT::Install-Recommends false",
    "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
    "bookworm",
]  # fmt: skip

# Timings and sizes, printed at the end of the run (measured, never asserted).
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("image-test figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    """Runs a command; on failure, the assertion carries the end of its output."""
    proc = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{shlex.join(cmd)}: exit {proc.returncode}\n{output}"
    return proc.stdout


@dataclass
class Engine:
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120) -> str:
        return run([DOCKER, *args], env=self.env, timeout=timeout)

    def ok(self, *args: str) -> bool:
        proc = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, check=False)
        return proc.returncode == 0


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.fail("make image-test starts dockerd, so it runs as root")
    STATE.mkdir(parents=True, exist_ok=True)
    sock = STATE / "docker.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "1"}
    log = open(STATE / "dockerd.log", "w")  # noqa: SIM115 (closed below)
    dockerd = subprocess.Popen(
        ["dockerd", "--data-root", str(STATE / "data-root"), "--exec-root", str(STATE / "exec"),
         "--pidfile", str(STATE / "dockerd.pid"), "-H", f"unix://{sock}",
         "--bridge=none", "--iptables=false", "--ip-masq=false"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        engine = Engine(env)
        deadline = time.monotonic() + 60
        while not engine.ok("version"):
            assert dockerd.poll() is None, (STATE / "dockerd.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "dockerd did not answer within 60 s"
            time.sleep(0.2)
        yield engine
    finally:
        dockerd.terminate()
        try:
            dockerd.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dockerd.kill()
            dockerd.wait()
        log.close()
        netns = STATE / "exec" / "netns" / "default"  # dockerd leaves it mounted
        subprocess.run(["umount", str(netns)], capture_output=True, check=False)


@pytest.fixture(scope="session")
def base_image(engine: Engine) -> str:
    """Debian with python3 and tini, made once and kept in the engine's data root."""
    if not engine.ok("image", "inspect", BASE):
        start = time.monotonic()
        with tempfile.TemporaryDirectory(dir=STATE) as tmp:
            tar = str(Path(tmp) / "base.tar")
            run([*MMDEBSTRAP, tar])
            engine("import", tar, BASE)
        FIGURES.append(f"base image made (mmdebstrap + import): {time.monotonic() - start:.0f} s")
    return BASE


class _Index(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def torch_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """This machine's CPU torch wheels as a package index on loopback (PEP 503 layout)."""
    wheels = sorted(TORCH_WHEELS.glob("torch-*+cpu-cp311-*.whl"))
    if not wheels:
        yield None
        return
    root = tmp_path_factory.mktemp("torch-index")
    (root / "torch").mkdir()
    for wheel in wheels:
        (root / "torch" / wheel.name).symlink_to(wheel)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Index, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def images(engine: Engine, base_image: str, torch_index: str | None) -> dict[str, str]:
    """gan-serve:api and gan-serve:worker, built by make image on the Debian base."""
    args = ["--network", "host", "--build-arg", f"BASE={base_image}"]
    if CA_BUNDLE.exists():
        args += ["--secret", f"id=ca,src={CA_BUNDLE}", "--build-arg", "PIP_CERT=/run/secrets/ca"]
    if torch_index:
        args += ["--build-arg", f"TORCH_INDEX_URL={torch_index}"]
    start = time.monotonic()
    run(["make", "image", f"DOCKER={DOCKER}", f"IMAGE_ARGS={shlex.join(args)}"], env=engine.env)
    FIGURES.append(f"make image (api and worker): {time.monotonic() - start:.0f} s")
    tags = {"api": "gan-serve:api", "worker": "gan-serve:worker"}
    for tag in tags.values():
        size = int(engine("image", "inspect", "--format", "{{.Size}}", tag))
        FIGURES.append(f"{tag}: {size / 1e6:.0f} MB")
    return tags


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of the image test's own, empty before and after."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def data_volume(engine: Engine) -> Iterator[str]:
    """The volume api and workers share at /data: job records and published versions."""
    name = f"gan-image-test-{uuid.uuid4().hex[:8]}"
    engine("volume", "create", name)
    yield name
    engine("volume", "rm", "--force", name)


@dataclass
class Container:
    engine: Engine
    name: str

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKER, "exec", self.name, *cmd],
            env=self.engine.env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    def inspect(self, field: str) -> str:
        return self.engine("inspect", "--format", f"{{{{{field}}}}}", self.name).strip()

    def logs(self) -> str:
        proc = subprocess.run(
            [DOCKER, "logs", self.name], env=self.engine.env, capture_output=True, text=True
        )
        return proc.stdout + proc.stderr


@pytest.fixture
def start(engine: Engine, data_volume: str) -> Iterator[Callable[..., Container]]:
    """Starts containers on host networking with the shared volume; removes them after."""
    started: list[Container] = []

    def start_container(image: str, **env: str) -> Container:
        name = f"gan-image-test-{uuid.uuid4().hex[:8]}"
        flags = [f"--env={key}={value}" for key, value in env.items()]
        engine("run", "--detach", "--name", name, "--network", "host",
               "--volume", f"{data_volume}:/data", *flags, image)  # fmt: skip
        started.append(Container(engine, name))
        return started[-1]

    yield start_container
    for container in started:
        print(f"--- {container.name} logs ---\n{container.logs()[-4000:]}")
        engine("rm", "--force", container.name)
