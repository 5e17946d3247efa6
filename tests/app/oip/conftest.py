"""A real server over the tiny models for the inference protocol's clients, one per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server


@pytest.fixture(scope="module")
def server(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("oip")
    shutil.copytree(template_repo, root / "models")
    env = {
        "GAN_MODELS_DIR": str(root / "models"),
        "GAN_DATA_DIR": str(root / "data"),
        "GAN_REGISTRY_POLL_SECONDS": "0",
        "GAN_EMBEDDED_WORKER": "false",
    }
    server = Server(env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
