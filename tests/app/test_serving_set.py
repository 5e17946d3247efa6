"""The serving set alone (`make serve`, the api image): no torch, and it still serves.

An environment like the one `make serve` makes, built here cheaply: a new venv whose
site-packages links every package of this one but torch's. The server samples and scores in
it, and refuses a retraining job it could not run with a clear 503 instead of queueing a job
that would fail.
"""

from __future__ import annotations

import site
import venv
from pathlib import Path

import httpx

from tests.app.helpers import TINY_JOB
from tests.conftest import Server

TORCH = ("torch", "torchgen", "functorch", "nvidia", "triton")


def _serving_python(root: Path) -> str:
    venv.create(root, with_pip=False)
    target = next((root / "lib").glob("python3*/site-packages"))
    for entry in Path(site.getsitepackages()[0]).iterdir():
        if not entry.name.split("-")[0].lower().startswith(TORCH):
            (target / entry.name).symlink_to(entry)
    return str(root / "bin" / "python")


def test_without_torch_the_server_serves_and_refuses_jobs_clearly(
    tmp_path: Path, models_dir: Path
) -> None:
    python = _serving_python(tmp_path / "venv")
    env = {"GAN_MODELS_DIR": str(models_dir), "GAN_DATA_DIR": str(tmp_path / "data")}
    server = Server(env, python=python)
    try:
        server.wait_ready()
        r = httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-cgan", "seed": 1})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        job = httpx.post(
            f"{server.url}/v1/jobs",
            json={"model": "tiny-cgan", "preset": "cdcgan", "overrides": TINY_JOB},
        )
        assert job.status_code == 503, job.text
        assert job.headers["content-type"] == "application/problem+json"
        assert "training packages" in job.json()["detail"] and "Retry-After" not in job.headers
        assert httpx.get(f"{server.url}/v1/jobs").json()["total"] == 0  # no job never to run
    finally:
        server.stop()
