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
from gan_client import GanClient
from gan_client.cli import progress_line
from PIL import Image

from core import imaging
from tests.app.helpers import TINY_JOB
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
        "--promote-on",
        "fid,nas",
    ]
    submitted = cli(server.url, *submit, api_key="k3y")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    record = httpx.get(f"{server.url}/v1/jobs/{job_id}").json()
    assert record["overrides"] == {"max_steps": 3} and record["promote_on"] == ["fid", "nas"]
    listed = cli(server.url, "jobs", "list")
    assert listed.returncode == 0 and job_id in listed.stdout and "queued" in listed.stdout
    cancelled = cli(server.url, "jobs", "cancel", job_id, api_key="k3y")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    watched = cli(server.url, "jobs", "watch", job_id, "--poll", "0.1")
    assert watched.returncode == 1 and "cancelled" in watched.stderr

    denied = cli(server.url, *submit)  # no key
    assert denied.returncode == 2 and "401" in denied.stderr


def test_discriminate_and_interpolate_print_the_clients_answers(  # type: ignore[no-untyped-def]
    models_dir: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    with GanClient(server.url) as gan:
        images, _ = gan.sample(3, seed=5, model="tiny-cgan")
        scores = gan.discriminate(images, labels=[1, 2, 3], model="tiny-cgan")
        sevens = gan.discriminate(images, labels=7, model="tiny-cgan")
        walk = {"from_seed": 1, "to_seed": 9, "steps": 5, "method": "lerp", "model": "tiny-gan"}
        frames, strip = gan.interpolate(**walk), gan.interpolate_png(**walk)
    np.save(tmp_path / "three.npy", images)
    pngs = [tmp_path / f"{i}.png" for i in range(3)]
    for path, image in zip(pngs, images, strict=True):
        path.write_bytes(imaging.encode_png(image))

    model = ["--model", "tiny-cgan"]
    from_npy = cli(
        server.url, "discriminate", str(tmp_path / "three.npy"), "--labels", "1,2,3", *model
    )
    from_png = cli(server.url, "discriminate", *map(str, pngs), "--labels", "7", *model)
    assert from_npy.returncode == 0 and from_png.returncode == 0, from_npy.stderr + from_png.stderr
    npy_rows = [line.split() for line in from_npy.stdout.splitlines()]
    assert npy_rows[0] == ["image", "probability_real", "logit"]
    assert [row[0] for row in npy_rows[1:]] == [f"{tmp_path / 'three.npy'}[{i}]" for i in range(3)]
    np.testing.assert_allclose(
        [[float(x) for x in row[1:]] for row in npy_rows[1:]], scores, atol=1e-4
    )
    png_rows = [line.split() for line in from_png.stdout.splitlines()[1:]]
    assert [row[0] for row in png_rows] == list(map(str, pngs))
    np.testing.assert_allclose([[float(x) for x in row[1:]] for row in png_rows], sevens, atol=1e-4)

    args = ["interpolate", "--from-seed", "1", "--to-seed", "9", "--steps", "5", "--method", "lerp"]
    for out in (tmp_path / "walk.npy", tmp_path / "walk.png"):
        made = cli(server.url, *args, "--model", "tiny-gan", "--out", str(out))
        assert made.returncode == 0, made.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "walk.npy"), frames)
    assert (tmp_path / "walk.png").read_bytes() == strip


def test_datasets_watch_log_and_alias(  # type: ignore[no-untyped-def]
    models_dir: Path, start_server, tmp_path: Path
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir), GAN_API_KEY="k3y")
    noise = np.random.default_rng(0).integers(0, 256, (32, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "noise.npz", images=noise, labels=np.arange(32) % 2)
    uploaded = cli(server.url, "datasets", "upload", str(tmp_path / "noise.npz"), api_key="k3y")
    assert uploaded.returncode == 0, uploaded.stderr
    dataset = uploaded.stdout.strip()
    listed = cli(server.url, "datasets", "list")
    assert listed.stdout.splitlines()[1].split()[:5] == [dataset, "noise.npz", "32", "2", "1x28x28"]
    with GanClient(server.url, api_key="k3y") as gan:
        overrides = {**TINY_JOB, "max_steps": 4}
        job = gan.submit_job("tiny-cgan", overrides=overrides, dataset=dataset, promote="never")

    watched = cli(server.url, "jobs", "watch", job["id"])
    assert watched.returncode == 0, watched.stderr
    assert "] 2/4 running  loss_d" in watched.stderr  # a progress event, between the records
    assert watched.stderr.splitlines()[-1] == "succeeded: version 2, not promoted"
    logged = cli(server.url, "jobs", "log", job["id"])
    assert logged.returncode == 0 and '"event": "completed"' in logged.stdout
    aliased = cli(server.url, "alias", "tiny-cgan", "production", "2", api_key="k3y")
    assert aliased.stdout.strip() == "tiny-cgan: production -> version 2", aliased.stderr
    with GanClient(server.url) as gan:
        assert gan.resolve("tiny-cgan")["version"] == 2
    denied = cli(server.url, "alias", "tiny-cgan", "production", "1")
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


def test_one_command_exports_stops_resumes_and_downloads(  # type: ignore[no-untyped-def]
    models_dir: Path, start_server, tmp_path: Path
) -> None:
    url = start_server(GAN_MODELS_DIR=str(models_dir)).url
    out = tmp_path / "digits"
    args = ["exports", "start", "--model", "tiny-cgan", "--n", "30", "--shard-size", "10"]
    made = cli(url, *args, "--label-mix", "1,0,0,0,0,0,0,0,0,1", "--out", str(out))
    assert made.returncode == 0, made.stderr
    job_id = made.stdout.splitlines()[0]
    assert "30 images in 3 shards" in made.stdout and "complete" in made.stdout
    with GanClient(url) as gan:
        assert gan.download_export(job_id, out) == json.loads((out / "manifest.json").read_text())
        assert gan.job(job_id)["export"]["label_mix"][9] == 1.0

    big = cli(url, "exports", "start", "--model", "tiny-cgan", "--n", "20000",
              "--shard-size", "500")  # fmt: skip
    big_id = big.stdout.strip()
    assert cli(url, "jobs", "cancel", big_id).returncode == 0  # queued or running: it stops
    with GanClient(url) as gan:
        assert gan.wait(big_id)["state"] == "cancelled"
        part = cli(url, "exports", "download", big_id, str(tmp_path / "big"), "--no-wait")
        assert part.returncode == 0 and "not complete yet" in part.stdout, part.stdout
        resumed = cli(url, "jobs", "resume", big_id)
        assert resumed.returncode == 0 and "queued again" in resumed.stdout
        rest = cli(url, "exports", "download", big_id, str(tmp_path / "big"))
        assert rest.returncode == 0 and "20000 images in 40 shards" in rest.stdout, rest.stderr
        record = gan.job(big_id)
    assert record["state"] == "succeeded"
    assert progress_line(record).startswith(f"[{'#' * 30}] 20000/20000 succeeded")
    refused = cli(url, "exports", "start", "--model", "tiny-gan", "--n", "5", "--label", "1")
    assert refused.returncode == 2 and "unconditional" in refused.stderr
