"""app.exports.run: shards of the engine's own images, whole, deterministic and resumable."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.exports.manifest import ExportFiles, finished, manifest, write_header
from app.exports.plan import ExportSpec
from app.exports.run import run_export
from app.serving.runtime import Engines
from core.repository import Repository
from tests.conftest import app_settings
from training.events import Event


@pytest.fixture
def engines(models_dir: Path) -> dict[str, Engines]:
    settings = app_settings(models_dir)
    repo = Repository(models_dir)
    return {
        name: Engines.load(repo.version_dir(name, 1), repo.verify(name, 1), settings)
        for name in ("tiny-gan", "tiny-cgan")
    }


def export(engines: Engines, out: Path, stop_after: int | None = None, **fields: object) -> bool:
    spec = ExportSpec.model_validate(
        {"model": engines.manifest.name, "version": 1, "n": 50, "shard_size": 12, **fields}
    )
    files = ExportFiles(out)
    write_header(files, spec, engines.manifest)
    stop = threading.Event()
    shards_seen: list[Event] = []

    def emit(event: Event) -> None:
        if event["event"] == "progress":
            shards_seen.append(event)
            if stop_after is not None and len(shards_seen) >= stop_after:
                stop.set()

    return run_export(spec, files, engines, stop=stop, emit=emit)


def shard_digests(out: Path) -> dict[str, str]:
    return {name: e["sha256"] for name, e in finished(ExportFiles(out)).items()}


def test_npz_shards_hold_the_engines_images_for_their_seeds_and_labels(
    engines: dict[str, Engines], tmp_path: Path
) -> None:
    cgan = engines["tiny-cgan"]
    assert export(cgan, tmp_path, seed=1000, label_mix=[0, 1, 1, 0, 0, 0, 0, 0, 0, 2])
    doc = manifest(ExportFiles(tmp_path))
    assert doc["complete"] and doc["images"] == 50 and doc["shards_total"] == 5
    assert [s["count"] for s in doc["shards"]] == [12, 12, 12, 12, 2]
    assert json.loads((tmp_path / "manifest.json").read_text()) == doc
    with np.load(tmp_path / "shard-000001.npz") as shard:
        images, seeds, labels = shard["images"], shard["seeds"], shard["labels"]
    assert seeds.tolist() == list(range(1012, 1024))
    assert set(labels.tolist()) <= {1, 2, 9}
    assert np.bincount(labels, minlength=10).tolist() == doc["shards"][1]["label_counts"]
    expected = cgan.generate({"seed": seeds, "label": labels})
    assert images.dtype == np.uint8 and np.array_equal(images, expected)


def test_the_same_export_made_twice_is_the_same_bytes(
    engines: dict[str, Engines], tmp_path: Path
) -> None:
    assert export(engines["tiny-gan"], tmp_path / "a")
    assert export(engines["tiny-gan"], tmp_path / "b")
    assert shard_digests(tmp_path / "a") == shard_digests(tmp_path / "b")
    assert len(shard_digests(tmp_path / "a")) == 5


def test_a_stopped_export_resumes_without_redoing_finished_shards(
    engines: dict[str, Engines], tmp_path: Path
) -> None:
    cgan = engines["tiny-cgan"]
    assert export(cgan, tmp_path / "whole")
    assert not export(cgan, tmp_path / "cut", stop_after=2)
    kept = finished(ExportFiles(tmp_path / "cut"))
    assert 2 <= len(kept) < 5
    assert not list((tmp_path / "cut").glob(".shard-*"))  # no temporary file left
    assert not (tmp_path / "cut" / "manifest.json").exists()
    inodes = {name: (tmp_path / "cut" / name).stat().st_ino for name in kept}
    assert export(cgan, tmp_path / "cut")
    assert shard_digests(tmp_path / "cut") == shard_digests(tmp_path / "whole")
    assert {name: (tmp_path / "cut" / name).stat().st_ino for name in kept} == inodes
    lines = (tmp_path / "cut" / "index.jsonl").read_text().splitlines()
    assert len(lines) == 5  # each shard recorded once


def test_a_torn_index_line_or_a_lost_shard_is_made_again(
    engines: dict[str, Engines], tmp_path: Path
) -> None:
    gan = engines["tiny-gan"]
    assert export(gan, tmp_path)
    digests = shard_digests(tmp_path)
    index = tmp_path / "index.jsonl"
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # a crash mid-append
    (tmp_path / "shard-000001.npz").unlink()
    assert sorted(finished(ExportFiles(tmp_path))) == ["shard-000000.npz", "shard-000002.npz"]
    assert export(gan, tmp_path)
    assert shard_digests(tmp_path) == digests


def test_tar_shards_are_webdataset_samples_of_the_same_images(
    engines: dict[str, Engines], tmp_path: Path
) -> None:
    cgan = engines["tiny-cgan"]
    assert export(cgan, tmp_path / "npz", n=12)
    assert export(cgan, tmp_path / "tar", n=12, format="tar")
    with np.load(tmp_path / "npz" / "shard-000000.npz") as shard:
        images, labels = shard["images"], shard["labels"]
    with tarfile.open(tmp_path / "tar" / "shard-000000.tar") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[:3] == ["000000000000.png", "000000000000.cls", "000000000000.json"]
        assert len(names) == 36
        for i in range(12):
            key = f"{i:012d}"
            png = tar.extractfile(f"{key}.png").read()  # type: ignore[union-attr]
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), images[i, :, :, 0])
            assert tar.extractfile(f"{key}.cls").read() == str(labels[i]).encode()  # type: ignore[union-attr]
            meta = json.loads(tar.extractfile(f"{key}.json").read())  # type: ignore[union-attr]
            assert meta == {"seed": i, "label": int(labels[i])}


def test_an_unconditional_tar_has_no_labels(engines: dict[str, Engines], tmp_path: Path) -> None:
    assert export(engines["tiny-gan"], tmp_path, n=3, format="tar")
    with tarfile.open(tmp_path / "shard-000000.tar") as tar:
        assert [m.name.split(".")[1] for m in tar.getmembers()] == ["png", "json"] * 3
    assert "label_counts" not in finished(ExportFiles(tmp_path))["shard-000000.tar"]
