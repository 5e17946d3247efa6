"""app.logs: one JSON line per request, whichever way the server is launched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port


def test_plain_uvicorn_logs_each_request_once(models_dir: Path, tmp_path: Path) -> None:
    """Launched without --no-access-log, uvicorn's access logger would print every request
    beside the app's JSON line; the app turns it off when it configures its logs."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "GAN_MODELS_DIR": str(models_dir), "GAN_DATA_DIR": str(tmp_path)}
    log = tmp_path / "server.log"
    with (
        open(log, "w") as out,
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT) as proc,
    ):
        try:
            deadline = time.monotonic() + 60
            while not _up(url):
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.1)
            for _ in range(3):
                assert httpx.get(f"{url}/v1/models").status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    lines = log.read_text().splitlines()
    mentions = [line for line in lines if "/v1/models" in line]
    assert len(mentions) == 3, lines
    assert all(json.loads(line)["logger"] == "app.access" for line in mentions)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
