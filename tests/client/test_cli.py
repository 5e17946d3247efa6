"""The gan-serve command against the real server, run as users run it: in a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gan_client.cli import progress_line
from PIL import Image

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli(url: str, *args: str, api_key: str | None = None) -> subprocess.CompletedProcess[str]:
    key = ["--api-key", api_key] if api_key else []
    return subprocess.run(
        [sys.executable, "-m", "gan_client.cli", "--url", url, *key, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_sample_writes_the_services_png_and_npy(  # type: ignore[no-untyped-def]
    models_dir: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    png, arr = tmp_path / "grid.png", tmp_path / "threes.npy"
    args = ["sample", "--model", "tiny-cgan", "--n", "6", "--seed", "3", "--label", "3"]
    made = cli(server.url, *args, "--cols", "3", "--out", str(png))
    assert made.returncode == 0, made.stderr
    with Image.open(png) as image:
        assert image.size == (3 * 30 + 2, 2 * 30 + 2)  # 28x28 tiles, 2px padding
    direct = httpx.post(
        f"{server.url}/v1/sample",
        json={"model": "tiny-cgan", "n": 6, "seed": 3, "labels": 3, "cols": 3},
    )
    assert png.read_bytes() == direct.content
    assert cli(server.url, *args, "--out", str(arr)).returncode == 0
    images = np.load(arr)
    with Image.open(io.BytesIO(direct.content)) as image:
        grid = np.asarray(image)
    assert images.shape == (6, 28, 28, 1)
    np.testing.assert_array_equal(images[1, :, :, 0], grid[2:30, 32:60])


def test_models_and_jobs(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    # No consumer: a submitted job stays queued, so its lifecycle runs without training.
    server = start_server(
        GAN_MODELS_DIR=str(models_dir), GAN_EMBEDDED_WORKER="false", GAN_API_KEY="k3y"
    )
    models = cli(server.url, "models")
    assert models.returncode == 0, models.stderr
    lines = models.stdout.splitlines()
    assert lines[0].split() == ["name", "serving", "versions", "conditional", "architecture"]
    assert lines[1].split()[:4] == ["tiny-cgan", "1", "1", "yes"]
    assert lines[2].split()[:4] == ["tiny-gan", "1", "1", "no"]

    submit = [
        "jobs",
        "submit",
        "--model",
        "tiny-cgan",
        "--set",
        "max_steps=3",
        "--promote",
        "never",
    ]
    submitted = cli(server.url, *submit, api_key="k3y")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert httpx.get(f"{server.url}/v1/jobs/{job_id}").json()["overrides"] == {"max_steps": 3}
    listed = cli(server.url, "jobs", "list")
    assert listed.returncode == 0 and job_id in listed.stdout and "queued" in listed.stdout
    cancelled = cli(server.url, "jobs", "cancel", job_id, api_key="k3y")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    watched = cli(server.url, "jobs", "watch", job_id, "--poll", "0.1")
    assert watched.returncode == 1 and "cancelled" in watched.stderr

    denied = cli(server.url, *submit)  # no key
    assert denied.returncode == 2 and "401" in denied.stderr


def test_errors_print_the_problem_and_exit_2(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    missing = cli(server.url, "sample", "--model", "nope", "--out", "never.png")
    assert missing.returncode == 2
    assert "no model named 'nope'" in missing.stderr and not (ROOT / "never.png").exists()
    too_many = cli(server.url, "sample", "--n", "5000", "--out", "never.png")
    assert too_many.returncode == 2 and "field n" in too_many.stderr
    bad_set = cli(server.url, "jobs", "submit", "--model", "tiny-cgan", "--set", "max_steps=-1")
    assert bad_set.returncode == 2 and "max_steps" in bad_set.stderr
    unknown = cli(server.url, "jobs", "watch", "0123456789abcdef")
    assert unknown.returncode == 2 and "no job" in unknown.stderr


def test_serve_runs_the_app_factory(models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "GAN_MODELS_DIR": str(models_dir), "GAN_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "gan_client.cli", "serve", "--port", str(port)]
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL) as proc:
        try:
            ready = _ready(f"http://127.0.0.1:{port}", proc)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    assert set(ready["models"]) == {"tiny-cgan", "tiny-gan"}


def _ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            response = httpx.get(f"{url}/readyz", timeout=1)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no ready server at {url}")


@pytest.mark.parametrize(
    ("state", "progress", "expected"),
    [
        ("queued", {"step": 0, "max_steps": 0}, "[" + "." * 30 + "] 0/0 queued"),
        (
            "running",
            {"step": 50, "max_steps": 200, "loss_d": 0.61234, "loss_g": 1.2, "eta_s": 83.4},
            "[" + "#" * 7 + "." * 23 + "] 50/200 running  loss_d 0.612  loss_g 1.200  ETA 0:01:23",
        ),
    ],
)
def test_progress_line(state: str, progress: dict[str, float], expected: str) -> None:
    assert progress_line({"state": state, "progress": progress}) == expected


def test_serve_outside_the_repository_warns_and_logs_each_request_once(tmp_path: Path) -> None:
    """Run where there is no models/ folder: a warning naming GAN_MODELS_DIR, and one JSON
    access line per request (uvicorn's own access log would print each a second time)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GAN_DATA_DIR": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "gan_client.cli", "serve", "--port", str(port)]
    log = tmp_path / "server.log"
    with (
        open(log, "w") as out,
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT) as proc,
    ):
        try:
            _healthy(url, proc)
            for _ in range(3):
                assert httpx.get(f"{url}/v1/models").json() == []
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    warned = [r for r in records if r["level"] == "warning" and "GAN_MODELS_DIR" in r["message"]]
    assert len(warned) == 1 and str(tmp_path / "models") in warned[0]["message"], lines
    access = [r for r in records if r["logger"] == "app.access" and r["path"] == "/v1/models"]
    assert len(access) == 3, lines
    assert not [line for line in lines if "/v1/models" in line and not line.startswith("{")]


def _healthy(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no live server at {url}")
