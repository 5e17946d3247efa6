"""Runs one job: the training child process, its progress, cancellation and promotion.

Training runs in ``python -m training train`` as a child process (crash isolation, real
cancellation, its own memory); this supervisor, inside a queue worker, streams the child's
JSON-line progress into the job record, beats a heartbeat, forwards cancellation as SIGTERM,
and decides the outcome from the exit status. The child publishes the new version itself
(export, parity check, atomic publish) without moving any alias; promotion happens here.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.errors import NotReady
from app.jobs import Job, JobStore, Progress
from app.registry import DEFAULT_ALIAS, Repository
from app.settings import Settings

log = logging.getLogger(__name__)
EXIT_STOPPED = 3  # training's exit code for "stopped by a signal, checkpoint written"
POLL_S = 0.25


def run_job(
    settings: Settings, job_id: str, shutdown: threading.Event, requeue: Callable[[str], object]
) -> None:
    store = JobStore(settings.data_dir)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    now = time.time()
    job = store.transition(
        job_id,
        {"queued"},
        state="running",
        worker=worker,
        heartbeat=now,
        started=now,
        attempts=store.get(job_id).attempts + 1,
    )
    if job is None:  # cancelled while queued, or delivered twice: nothing to do
        return
    folder = store.dir(job_id)
    with open(folder / "log.txt", "ab") as log_file:
        proc = subprocess.Popen(
            _command(settings, job, folder),
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=Path(__file__).resolve().parents[1],
        )
        reader = threading.Thread(
            target=_read_events, args=(store, job_id, proc, log_file), daemon=True
        )
        reader.start()
        stopping = False
        while proc.poll() is None:
            time.sleep(POLL_S)
            current = store.patch(job_id, heartbeat=time.time())
            if not stopping and (current.cancel_requested or shutdown.is_set()):
                proc.send_signal(signal.SIGTERM)  # the child checkpoints and exits 3
                stopping = True
        reader.join()
    _finish(settings, store, job_id, proc.returncode, requeue)


def _command(settings: Settings, job: Job, folder: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "training", "train",
        "--config", str(folder / "config.json"),
        "--name", job.model,
        "--run-dir", str(folder / "run"),
        "--out", str(settings.models_dir),
        "--no-promote",
        "--exit-with-parent",
        "--device", settings.device,  # GAN_DEVICE: auto trains on a GPU when torch sees one
    ]  # fmt: skip
    if job.base_version is not None:
        base = Repository(settings.models_dir).version_dir(job.model, job.base_version)
        cmd += ["--init-from", str(base), "--parent-version", str(job.base_version)]
    return cmd


def _read_events(
    store: JobStore, job_id: str, proc: subprocess.Popen[bytes], log_file: Any
) -> None:
    assert proc.stdout is not None
    last_progress = 0.0
    for raw in proc.stdout:
        log_file.write(raw)
        log_file.flush()
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        kind = event.get("event") if isinstance(event, dict) else None
        if kind == "progress":
            if time.monotonic() - last_progress < 0.5:
                continue  # the record is for humans; stats.jsonl has every event
            last_progress = time.monotonic()
        if kind in ("progress", "start", "stopped", "completed"):
            fields = {k: v for k, v in event.items() if k in Progress.model_fields}
            store.update(job_id, functools.partial(_with_progress, fields=fields))
        elif kind == "evaluation":
            store.patch(job_id, metrics=event.get("metrics", {}))
        elif kind == "published":
            store.patch(job_id, published_version=int(event["version"]))


def _with_progress(job: Job, fields: dict[str, Any]) -> Job:
    return job.model_copy(update={"progress": job.progress.model_copy(update=fields)})


def _finish(
    settings: Settings,
    store: JobStore,
    job_id: str,
    returncode: int,
    requeue: Callable[[str], object],
) -> None:
    job = store.get(job_id)
    now = time.time()
    if returncode == 0 and job.published_version is not None:
        promoted, reason = promote(settings, job)
        store.patch(
            job_id,
            state="succeeded",
            finished=now,
            promoted=promoted,
            promotion_reason=reason,
            metrics=_published_metrics(settings, job) or job.metrics,
        )
    elif returncode == EXIT_STOPPED and job.cancel_requested:
        store.patch(job_id, state="cancelled", finished=now)
    elif returncode == EXIT_STOPPED:  # the worker is shutting down: resume elsewhere, later
        try:
            requeue(job_id)
        except NotReady:  # left running without a heartbeat: the reaper requeues it
            log.warning("job %s: the queue is unreachable; the reaper will requeue it", job_id)
    else:
        store.patch(job_id, state="failed", finished=now, error=_failure(store, job_id, returncode))
    log.info("job %s: %s", job_id, store.get(job_id).state)


def _failure(store: JobStore, job_id: str, returncode: int) -> str:
    lines = (store.dir(job_id) / "log.txt").read_text(errors="replace").strip().splitlines()
    errors = [line for line in lines if not line.startswith("{")]
    tail = errors[-1] if errors else "no output"
    return f"training exited with status {returncode}: {tail[:500]}"


def _published_metrics(settings: Settings, job: Job) -> dict[str, Any]:
    assert job.published_version is not None
    manifest = Repository(settings.models_dir).manifest(job.model, job.published_version)
    return manifest.metrics


def promote(settings: Settings, job: Job) -> tuple[bool, str]:
    """Apply the job's promotion policy to its published version."""
    assert job.published_version is not None
    repo = Repository(settings.models_dir)
    new = job.published_version
    if job.promote == "never":
        return False, "policy is never"
    if job.promote == "if_better":
        better, reason = is_better(repo, job.model, new)
        if not better:
            return False, reason
    else:
        reason = "policy is always"
    repo.set_alias(job.model, DEFAULT_ALIAS, new)
    return True, reason


def is_better(repo: Repository, name: str, new: int) -> tuple[bool, str]:
    """No worse FID and no fewer classes covered than the version in production."""
    current = repo.aliases(name).get(DEFAULT_ALIAS)
    if current is None:
        return True, "no version was in production"
    old_m = repo.manifest(name, current).metrics.get("generated")
    new_m = repo.manifest(name, new).metrics.get("generated")
    if not old_m or not new_m:
        return False, "metrics missing: cannot compare with production"
    fid_ok = new_m["fid"] <= old_m["fid"]
    cov_ok = new_m["mode_coverage"]["classes_covered"] >= old_m["mode_coverage"]["classes_covered"]
    verdict = (
        f"FID {new_m['fid']:.2f} vs {old_m['fid']:.2f} in production (v{current}); classes "
        f"covered {new_m['mode_coverage']['classes_covered']} vs "
        f"{old_m['mode_coverage']['classes_covered']}"
    )
    return fid_ok and cov_ok, verdict
