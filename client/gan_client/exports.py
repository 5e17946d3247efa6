"""Bulk exports on the client side: download one, resumably, and read its shards.

The shard formats are the server's (``app/exports/shards.py`` writes them; this module reads
them): ``npz`` with ``images`` uint8 [N, H, W, C], ``seeds`` and, for conditional models,
``labels``; or a WebDataset ``tar`` of ``<seed>.png``, ``<seed>.cls``, ``<seed>.json``.

A download is a folder holding the shards and, once every shard is there and checked, the
export's ``manifest.json``. Run it again after any failure and it goes on where it stopped:
verified shards are kept, a partial one is continued with a range request.

    >>> manifest = download(http, "4be1c0ffee", Path("digits"))  # waits for the export to end
    >>> images, seeds, labels = read_shard(Path("digits") / manifest["shards"][0]["name"])
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from gan_client.calls import problem

MANIFEST = "manifest.json"
FAILED = ("failed", "cancelled")


def download(
    http: httpx.Client,
    job_id: str,
    dest: Path,
    *,
    wait: bool = True,
    poll: float = 2.0,
    retries: int = 5,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fetch every shard of export ``job_id`` into ``dest`` and return its manifest.

    With ``wait``, shards are fetched as the export makes them until it is complete; without,
    what is finished now is fetched and the manifest returned may have ``complete: false``.
    ``progress`` gets each shard's manifest entry once it is on disk and checked.
    """
    dest.mkdir(parents=True, exist_ok=True)
    while True:
        manifest = _get_json(http, f"/v1/exports/{job_id}/manifest.json")
        for entry in manifest["shards"]:
            if not _verified(dest / entry["name"], entry):
                _fetch(http, f"/v1/exports/{job_id}/shards/{entry['name']}", dest, entry, retries)
            if progress is not None:
                progress(entry)
        if manifest["complete"]:
            (dest / MANIFEST).write_text(json.dumps(manifest, indent=2))
            return manifest
        if not wait:
            return manifest
        job = _get_json(http, f"/v1/jobs/{job_id}")
        if job["state"] in FAILED:
            raise RuntimeError(f"export {job_id} {job['state']}: {job.get('error') or ''}".strip())
        time.sleep(poll)


def _get_json(http: httpx.Client, path: str) -> dict[str, Any]:
    r = http.get(path)
    if r.status_code != 200:
        raise problem(r)
    return dict(r.json())


def _verified(path: Path, entry: dict[str, Any]) -> bool:
    """Whether ``path`` is this shard whole (size first: hashing a wrong file is wasted)."""
    try:
        if path.stat().st_size != entry["bytes"]:
            return False
    except FileNotFoundError:
        return False
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest() == entry["sha256"]


def _fetch(http: httpx.Client, url: str, dest: Path, entry: dict[str, Any], retries: int) -> None:
    """Download one shard to ``<name>.part``, continuing what is there, then check and rename."""
    part = dest / f"{entry['name']}.part"
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if 0 < have < entry["bytes"] else {}
        try:
            with http.stream("GET", url, headers=headers) as r:
                if r.status_code not in (200, 206):
                    r.read()
                    raise problem(r)
                with open(part, "ab" if r.status_code == 206 else "wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
        except httpx.TransportError:
            if attempt == retries:
                raise
            time.sleep(min(2**attempt, 10))
            continue
        if _verified(part, entry):
            os.replace(part, dest / entry["name"])
            return
        part.unlink()  # whole but wrong: start this shard again
    raise RuntimeError(f"{entry['name']}: sha256 did not match after {retries + 1} attempts")


def read_shard(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(images uint8 [N, H, W, C], seeds int64 [N], labels int64 [N] or None) of a shard."""
    if path.suffix == ".npz":
        with np.load(path) as shard:
            labels = shard["labels"] if "labels" in shard.files else None
            return shard["images"], shard["seeds"], labels
    return _read_tar(path)


def _read_tar(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from PIL import Image  # only tar shards need it

    images, seeds, labels = [], [], []
    with tarfile.open(path) as tar:
        for member in tar:
            data = tar.extractfile(member)
            if data is None:
                continue
            kind = member.name.rsplit(".", 1)[1]
            if kind == "png":
                pixels = np.asarray(Image.open(io.BytesIO(data.read())))
                images.append(pixels[:, :, None] if pixels.ndim == 2 else pixels)
            elif kind == "json":
                meta = json.loads(data.read())
                seeds.append(meta["seed"])
                if meta["label"] is not None:
                    labels.append(meta["label"])
    return (
        np.stack(images),
        np.asarray(seeds, dtype=np.int64),
        np.asarray(labels, dtype=np.int64) if labels else None,
    )
