"""An export's folder and its manifest: the one owner of both.

    <job folder>/export/header.json        what the export is (spec, model, generator sha256),
                                           written on submission
    <job folder>/export/index.jsonl        one line per finished shard, appended and fsynced
    <job folder>/export/shard-000000.npz   the shards (app.exports.shards)
    <job folder>/export/manifest.json      header + every shard, written when the export ends

A shard is written under a temporary name, fsynced and renamed, and only then recorded in the
index, so a shard in the index is whole; a restart redoes only shards the index lacks. While an
export runs, :func:`manifest` composes the same document from the header and the index (with
``complete: false``): clients can download finished shards before the export ends.

    >>> files = ExportFiles(Path("data/jobs/4be1c0ffee/export"))
    >>> manifest(files)["shards"][0]
    {'name': 'shard-000000.npz', 'index': 0, 'first_seed': 0, 'count': 10000, 'bytes': ...,
     'sha256': '...', 'label_counts': [1000, ...]}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.exports.plan import ExportSpec, shard_count
from core.atomic import write_atomic
from core.repository import Manifest

FORMAT = "gan-serve-export/1"


@dataclass(frozen=True)
class ExportFiles:
    root: Path

    @property
    def header(self) -> Path:
        return self.root / "header.json"

    @property
    def index(self) -> Path:
        return self.root / "index.jsonl"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def shard(self, name: str) -> Path:
        return self.root / name


def write_header(files: ExportFiles, spec: ExportSpec, version: Manifest) -> None:
    """What the export is, written when it is submitted: its manifest exists from then on."""
    files.root.mkdir(parents=True, exist_ok=True)
    generator = version.artifacts.get("generator.onnx") or version.artifacts.get("generator.pt")
    model = {
        "name": version.name,
        "version": version.version,
        "generator_sha256": generator,
        "image_shape": version.image_shape,
        "num_classes": version.num_classes,
        "class_names": version.class_names,
    }
    header = {"format": FORMAT, "spec": spec.model_dump(mode="json"), "model": model}
    write_atomic(files.header, json.dumps(header, indent=2).encode())


def finished(files: ExportFiles) -> dict[str, dict[str, Any]]:
    """The shards recorded in the index, by name; a line torn by a crash is ignored, as is a
    shard whose file is missing or of another size (it is made again)."""
    shards: dict[str, dict[str, Any]] = {}
    try:
        lines = files.index.read_text().splitlines()
    except FileNotFoundError:
        return shards
    for line in lines:
        try:
            entry = json.loads(line)
            size = files.shard(entry["name"]).stat().st_size
        except (ValueError, KeyError, TypeError, OSError):
            continue
        if size == entry.get("bytes"):
            shards[entry["name"]] = entry
    return shards


def record(files: ExportFiles, entry: dict[str, Any]) -> None:
    """Append a finished shard to the index, durably."""
    with open(files.index, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def manifest(files: ExportFiles) -> dict[str, Any]:
    """Header and finished shards (by index), with how much of the export is done."""
    header = json.loads(files.header.read_text())
    spec = ExportSpec.model_validate(header["spec"])
    shards = sorted(finished(files).values(), key=lambda s: s["index"])
    return {
        **header,
        "complete": len(shards) == shard_count(spec),
        "images": sum(s["count"] for s in shards),
        "shards_total": shard_count(spec),
        "shards": shards,
    }


def write_manifest(files: ExportFiles) -> None:
    write_atomic(files.manifest, json.dumps(manifest(files), indent=2).encode())
