"""Shared fixtures: tiny models really trained and exported once per session, and servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_OVERRIDES = {
    "tiny-gan": {
        "architecture": "paper-mlp",
        "prior": "uniform",
        "latent_dim": 8,
        "network": {"g_hidden": 32, "d_hidden": 16, "maxout_pieces": 2},
    },
    "tiny-cgan": {
        "architecture": "dcgan",
        "conditional": True,
        "latent_dim": 8,
        "network": {"width": 4, "label_dim": 4},
    },
}


def tiny_config(name: str, **extra: object):  # type: ignore[no-untyped-def]
    from training.config import TrainConfig

    return TrainConfig.model_validate(
        {
            **TINY_OVERRIDES[name],
            "max_steps": 4,
            "batch_size": 16,
            "eval_every": 1000,
            "checkpoint_every": 2,
            "log_every": 1,
            "ema_decay": 0.9,
            **extra,
        }
    )


def app_settings(models_dir: Path, **extra: Any):  # type: ignore[no-untyped-def]
    """Settings for an in-process app over ``models_dir``: no polling, no job consumer."""
    from app.settings import Settings

    defaults: dict[str, Any] = {
        "models_dir": models_dir,
        "data_dir": models_dir.parent / "data",
        "registry_poll_seconds": 0,
        "embedded_worker": False,
    }
    return Settings(**{**defaults, **extra})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GAN_") and key != "GAN_TEST_REDIS_URL":
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding tiny-gan v1 and tiny-cgan v1, trained for a few steps."""
    from core.repository import Repository
    from training.export import publish_run
    from training.loop import train

    root = tmp_path_factory.mktemp("repo")
    for name in TINY_OVERRIDES:
        run_dir = tmp_path_factory.mktemp(f"run-{name}")
        train(tiny_config(name), run_dir)
        publish_run(run_dir, Repository(root / "models"), name, evaluate=False)
    return root / "models"


@pytest.fixture
def models_dir(template_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the template repository, free to modify."""
    dest = tmp_path / "models"
    shutil.copytree(template_repo, dest)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn serving the app factory in a child process, on a free loopback port."""

    def __init__(self, env: dict[str, str], python: str = sys.executable) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [python, "-m", "app", "--host", "127.0.0.1", "--port", str(self.port)]
        # A file, not a pipe: a full pipe would block the server's logging.
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready in {timeout}s: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    servers: list[Server] = []

    def start(**env: str) -> Server:
        defaults = {"GAN_REGISTRY_POLL_SECONDS": "0.2", "GAN_DATA_DIR": str(tmp_path / "data")}
        server = Server({**defaults, **env})
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
