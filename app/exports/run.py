"""Making an export's shards: the engine's images, written shard by shard, resumable.

Runs in the export process (``python -m app.exports``), on the version's own ``Engines``: the
same seeds-to-pixels path as ``/v1/sample``, with every core the engine can use. Memory stays
constant whatever ``n`` is: one shard's pixels at a time. The next shard is generated while the
last one is written (a writer thread: saving, fsync and sha256 release the GIL).

    >>> complete = run_export(spec, files, engines, stop=threading.Event(), emit=print)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from app.exports import shards
from app.exports.manifest import ExportFiles, finished, record, write_manifest
from app.exports.plan import (
    ExportSpec,
    ShardFormat,
    shard_count,
    shard_labels,
    shard_name,
    shard_range,
)
from app.serving.runtime import Engines
from training.events import Event, EventType

BATCH = 1024  # rows per engine call: past this the engine gains nothing (README, Benchmarks)


def run_export(
    spec: ExportSpec,
    files: ExportFiles,
    engines: Engines,
    *,
    stop: threading.Event,
    emit: Callable[[Event], None],
) -> bool:
    """Make every shard the index lacks; False when ``stop`` was set first (the shard in the
    making is dropped: a resume makes it again)."""
    m = engines.manifest
    total = shard_count(spec)
    done = finished(files)
    progress = {
        "images": sum(e["count"] for e in done.values()),
        "images_total": spec.n,
        "shards": len(done),
        "shards_total": total,
    }
    emit({"event": EventType.START, **progress})
    started, made = time.monotonic(), 0
    with ThreadPoolExecutor(1, thread_name_prefix="shard-writer") as writer:
        pending: Future[dict[str, Any]] | None = None
        for index in range(total):
            name = shard_name(spec, index)
            if name in done:
                continue
            first, count = shard_range(spec, index)
            seeds = np.arange(first, first + count, dtype=np.int64)
            labels = shard_labels(spec, m.num_classes, index)
            images = _generate(engines, spec, seeds, labels, stop)
            if pending is not None:
                record(files, pending.result())
            if images is None:
                pending = None
                break
            pending = writer.submit(
                _write, files, spec.format, index, name, images, seeds, labels, m.num_classes
            )
            made += count
            progress["images"] += count
            progress["shards"] += 1
            rate = made / (time.monotonic() - started)
            eta = (spec.n - progress["images"]) / rate
            emit({"event": EventType.PROGRESS, **progress, "images_per_s": rate, "eta_s": eta})
        if pending is not None:
            record(files, pending.result())
    if stop.is_set() and len(finished(files)) < total:
        emit({"event": EventType.STOPPED, **progress})
        return False
    write_manifest(files)
    emit({"event": EventType.COMPLETED, **progress})
    return True


def _generate(
    engines: Engines,
    spec: ExportSpec,
    seeds: np.ndarray,
    labels: np.ndarray | None,
    stop: threading.Event,
) -> np.ndarray | None:
    c, h, w = engines.manifest.image_shape
    images = np.empty((len(seeds), h, w, c), dtype=np.uint8)
    for start in range(0, len(seeds), BATCH):
        if stop.is_set():
            return None
        rows = slice(start, start + BATCH)
        inputs = {"seed": seeds[rows]}
        if labels is not None:
            inputs["label"] = labels[rows]
        if spec.truncation is not None:
            inputs["truncation"] = np.full(len(inputs["seed"]), spec.truncation)
        images[rows] = engines.generate(inputs)
    return images


def _write(
    files: ExportFiles,
    fmt: ShardFormat,
    index: int,
    name: str,
    images: np.ndarray,
    seeds: np.ndarray,
    labels: np.ndarray | None,
    num_classes: int,
) -> dict[str, Any]:
    """Write a shard whole (temporary name, fsync, rename) and return its index entry.

    ``core.atomic.write_atomic``'s steps, but streamed into the file: building the shard in
    memory first and handing over its bytes made exports about a tenth slower (measured).
    """
    fd, tmp = tempfile.mkstemp(dir=files.root, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w+b") as f:
            shards.write(fmt, f, images, seeds, labels)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
            f.seek(0)
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        os.chmod(tmp, 0o644)
        os.replace(tmp, files.shard(name))
    except BaseException:
        os.unlink(tmp)
        raise
    entry: dict[str, Any] = {
        "name": name,
        "index": index,
        "first_seed": int(seeds[0]),
        "count": len(seeds),
        "bytes": size,
        "sha256": digest,
    }
    if labels is not None:
        entry["label_counts"] = np.bincount(labels, minlength=num_classes).tolist()
    return entry
