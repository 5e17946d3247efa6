"""Runs one job: the child process, its progress, cancellation and promotion.

Training runs in ``python -m training train``, an export in ``python -m app.exports``, each as a
child process (crash isolation, real cancellation, its own memory); this supervisor, inside a
queue worker, streams the child's JSON-line progress into the job record, beats a heartbeat,
forwards cancellation as SIGTERM, and decides the outcome from the exit status (the protocol:
``training.events``). A training child publishes the new version itself (export, parity check,
atomic publish) without moving any alias; the job's promotion policy (``app.jobs.promotion``)
is applied here.
"""

from __future__ import annotations

import functools
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

from app.jobs.promotion import promote, published_metrics
from app.jobs.store import Job, JobFolder, JobStore, Progress, open_store
from app.settings import Settings
from core.errors import NotReady
from training import events
from training.events import EXIT_STOPPED, EventType

log = logging.getLogger(__name__)
POLL_S = 0.25


def run_job(
    settings: Settings, job_id: str, shutdown: threading.Event, requeue: Callable[[str], object]
) -> None:
    store = open_store(settings)
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
    if job.cancel_requested:  # asked to stop while it was put back on the queue
        store.patch(job_id, state="cancelled", finished=time.time())
        return
    folder = store.folder(job_id)
    config = store.config_file(job_id)  # records in Redis: written here for the child
    with open(folder.log, "ab") as log_file:
        proc = subprocess.Popen(
            _command(settings, job, folder, config),
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=Path(__file__).resolve().parents[2],
        )
        reader = threading.Thread(
            target=_read_events, args=(store, job_id, proc, log_file), daemon=True
        )
        reader.start()
        stopping = False
        while proc.poll() is None:
            time.sleep(POLL_S)
            try:
                current = store.patch(job_id, heartbeat=time.time())
            except NotReady:  # Redis restarting: training goes on, beats resume with it
                continue
            if not stopping and (current.cancel_requested or shutdown.is_set()):
                proc.send_signal(signal.SIGTERM)  # the child checkpoints and exits 3
                stopping = True
        reader.join()
    # A child signalled before it installed its handler (still importing torch) dies of
    # SIGTERM instead of exiting EXIT_STOPPED; it was stopped all the same.
    stopped = proc.returncode == EXIT_STOPPED or (stopping and proc.returncode == -signal.SIGTERM)
    _finish(settings, store, job_id, proc.returncode, stopped, requeue)


def _command(settings: Settings, job: Job, folder: JobFolder, config: Path) -> list[str]:
    if job.kind == "export":
        return [
            sys.executable, "-m", "app.exports",
            "--spec", str(config),
            "--out", str(folder.export.root),
            "--stats", str(folder.run.stats),
            "--models", str(settings.published_models),
            "--base-models", str(settings.models_dir),
            "--device", settings.device,
            "--backend", settings.backend,
            "--exit-with-parent",
        ]  # fmt: skip
    cmd = [
        sys.executable, "-m", "training", "train",
        "--config", str(config),
        "--name", job.model,
        "--run-dir", str(folder.run.root),
        "--out", str(settings.published_models),
        "--base-models", str(settings.models_dir),
        "--no-promote",
        "--exit-with-parent",
        "--quiet-libraries",  # the log shows the run's own lines, not torch's warnings
        "--device", settings.device,  # GAN_DEVICE: auto trains on a GPU when torch sees one
    ]  # fmt: skip
    if job.base_version is not None:
        base = settings.repository().version_dir(job.model, job.base_version)
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
        event = events.decode(raw)
        if event is None:
            continue
        kind = event["event"]
        if kind == EventType.PROGRESS:
            if time.monotonic() - last_progress < 0.5:
                continue  # the record is for humans; stats.jsonl has every event
            last_progress = time.monotonic()
        # While the store is unreachable (Redis restarting) progress waits for the next event;
        # the published version decides the outcome and is retried for a minute.
        tries = 60 if kind == EventType.PUBLISHED else 1
        for attempt in range(1, tries + 1):
            try:
                _record(store, job_id, kind, event)
                break
            except NotReady:
                log.warning("job %s: %s not recorded: the store is unreachable", job_id, kind)
                if attempt < tries:
                    time.sleep(1)


def _record(store: JobStore, job_id: str, kind: str, event: dict[str, Any]) -> None:
    if kind in events.PROGRESS_EVENTS:
        fields = {k: v for k, v in event.items() if k in Progress.model_fields}
        store.update(job_id, functools.partial(_with_progress, fields=fields))
    elif kind == EventType.EVALUATION:
        store.patch(job_id, metrics=event.get("metrics", {}))
    elif kind == EventType.PUBLISHED:
        store.patch(job_id, published_version=int(event["version"]))


def _with_progress(job: Job, fields: dict[str, Any]) -> Job:
    return job.model_copy(update={"progress": job.progress.model_copy(update=fields)})


def _finish(
    settings: Settings,
    store: JobStore,
    job_id: str,
    returncode: int,
    stopped: bool,
    requeue: Callable[[str], object],
) -> None:
    job = store.get(job_id)
    now = time.time()
    if job.cancel_requested and (stopped or returncode == 0):
        # A cancel that came during export could not stop the publish: the version stays,
        # unpromoted, and the job still ends as its owner asked.
        reason = "cancelled; not promoted" if job.published_version is not None else None
        store.patch(job_id, state="cancelled", finished=now, promotion_reason=reason)
    elif returncode == 0 and job.kind == "export":
        store.patch(job_id, state="succeeded", finished=now)
    elif returncode == 0 and job.published_version is not None:
        promoted, reason = promote(settings, job)
        store.patch(
            job_id,
            state="succeeded",
            finished=now,
            promoted=promoted,
            promotion_reason=reason,
            metrics=published_metrics(settings, job) or job.metrics,
        )
    elif stopped:  # the worker is shutting down: resume elsewhere, later
        try:
            requeue(job_id)
        except NotReady:  # left running without a heartbeat: the reaper requeues it
            log.warning("job %s: the queue is unreachable; the reaper will requeue it", job_id)
    else:
        store.patch(job_id, state="failed", finished=now, error=_failure(store, job_id, returncode))
    log.info("job %s: %s", job_id, store.get(job_id).state)


def _failure(store: JobStore, job_id: str, returncode: int) -> str:
    lines = store.folder(job_id).log.read_text(errors="replace").strip().splitlines()
    errors = [line for line in lines if not line.startswith("{")]
    tail = errors[-1] if errors else "no output"
    return f"training exited with status {returncode}: {tail[:500]}"
