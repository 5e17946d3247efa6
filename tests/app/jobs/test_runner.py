"""app.jobs.runner: a job's training run, from a base version, and cancelled mid-run."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from core.repository import Repository
from tests.app.helpers import TINY_JOB, submit, wait_state


def test_a_fine_tune_starts_from_the_base_version(  # type: ignore[no-untyped-def]
    models_dir: Path, tmp_path: Path, start_server
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    job = submit(
        server.url, base_version=1, promote="never", overrides={**TINY_JOB, "max_steps": 2}
    )
    done = wait_state(server.url, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["promoted"] is False, done
    # Published under the data dir, over the read-only models folder, which stays as it was.
    published = Repository(tmp_path / "data" / "models", base=models_dir)
    manifest = published.manifest("tiny-cgan", done["published_version"])
    assert manifest.parent_version == 1 and done["published_version"] == 2
    assert Repository(models_dir).versions("tiny-cgan") == [1]
    assert published.version_dir("tiny-cgan", 2).parent.parent == tmp_path / "data" / "models"
    mismatched = httpx.post(
        f"{server.url}/v1/jobs",
        json={"model": "tiny-cgan", "base_version": 1, "overrides": {"max_steps": 2}},
    )
    assert mismatched.status_code == 422 and mismatched.json()["field"] == "base_version"


def test_cancel_a_queued_and_a_running_job(  # type: ignore[no-untyped-def]
    models_dir: Path, tmp_path: Path, start_server
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    running = submit(server.url, overrides={**TINY_JOB, "max_steps": 100_000})
    queued = submit(server.url)  # one worker: waits behind the first
    assert httpx.get(f"{server.url}/v1/jobs/{queued['id']}").json()["state"] == "queued"
    gone = httpx.delete(f"{server.url}/v1/jobs/{queued['id']}")
    assert gone.status_code == 200 and gone.json()["state"] == "cancelled"
    assert httpx.delete(f"{server.url}/v1/jobs/{queued['id']}").status_code == 409

    deadline = time.monotonic() + 60
    while (record := httpx.get(f"{server.url}/v1/jobs/{running['id']}").json())["progress"][
        "step"
    ] < 4:
        assert time.monotonic() < deadline and record["state"] in ("queued", "running"), record
        time.sleep(0.2)
    httpx.delete(f"{server.url}/v1/jobs/{running['id']}")
    done = wait_state(server.url, running["id"], {"cancelled", "failed", "succeeded"}, 60)
    assert done["state"] == "cancelled" and done["published_version"] is None
    assert Repository(tmp_path / "data" / "models", base=models_dir).versions("tiny-cgan") == [1]


def test_a_cancel_right_after_the_start_ends_cancelled(  # type: ignore[no-untyped-def]
    models_dir: Path, tmp_path: Path, start_server
) -> None:
    """The child is still importing torch, its SIGTERM handler not yet installed: it dies of
    the signal (-15) instead of exiting 3, and was stopped all the same."""
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    job = submit(server.url, overrides={**TINY_JOB, "max_steps": 100_000})
    deadline = time.monotonic() + 60
    while (record := httpx.get(f"{server.url}/v1/jobs/{job['id']}").json())["state"] == "queued":
        assert time.monotonic() < deadline, record
        time.sleep(0.01)
    assert record["state"] == "running" and record["progress"]["step"] == 0, record
    assert httpx.delete(f"{server.url}/v1/jobs/{job['id']}").status_code == 200
    done = wait_state(server.url, job["id"], {"cancelled", "failed", "succeeded"}, 60)
    assert done["state"] == "cancelled", done
    assert done["error"] is None and done["published_version"] is None
    assert '"event"' not in httpx.get(f"{server.url}/v1/jobs/{job['id']}/log").text  # no progress
    assert Repository(tmp_path / "data" / "models", base=models_dir).versions("tiny-cgan") == [1]
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


def test_a_job_log_holds_its_own_lines_not_library_warnings(
    models_dir: Path,
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    job = submit(server.url, promote="never", overrides={**TINY_JOB, "max_steps": 2})
    done = wait_state(server.url, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded", done
    log = httpx.get(f"{server.url}/v1/jobs/{job['id']}/log").text
    lines = log.splitlines()
    assert any('"event": "completed"' in line for line in lines), log
    own = re.compile(r"^(INFO|WARNING|ERROR) (training|core)[.:]")
    others = [line for line in lines if not line.startswith("{") and not own.match(line)]
    assert others == [], others  # torchvision, FutureWarning, the exporter's UserWarning
    assert any(own.match(line) and "published tiny-cgan" in line for line in lines), log
