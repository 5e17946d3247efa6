"""gan_client.exports and ExportDataset: an export downloaded resumably, then trained from."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from gan_client import GanClient
from gan_client.dataset import ExportDataset, GanDataset
from gan_client.errors import NotFoundError
from gan_client.exports import download, read_shard
from torch.utils.data import DataLoader

from tests.app.helpers import wait_state


def export(url: str, **body: object) -> str:
    payload = {"model": "tiny-cgan", "n": 50, "shard_size": 12, **body}
    r = httpx.post(f"{url}/v1/exports", json=payload)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_a_download_resumes_a_cut_shard_and_refetches_a_corrupt_one(
    models_dir: Path, start_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = start_server(GAN_MODELS_DIR=str(models_dir)).url
    job = export(url, label_mix=[1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    statuses: list[int] = []
    hooks = {"response": [lambda r: statuses.append(r.status_code)]}
    with httpx.Client(base_url=url, event_hooks=hooks) as http:
        manifest = download(http, job, tmp_path)  # waits for the job to finish
        assert manifest["complete"] and (tmp_path / "manifest.json").is_file()
        shards = [tmp_path / s["name"] for s in manifest["shards"]]
        for path, entry in zip(shards, manifest["shards"], strict=True):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]

        statuses.clear()
        download(http, job, tmp_path)  # all there: only the manifest is asked for
        assert statuses == [200]

        whole = shards[1].read_bytes()
        shards[1].rename(tmp_path / f"{shards[1].name}.part")
        (tmp_path / f"{shards[1].name}.part").write_bytes(whole[:1000])  # a cut download
        data = bytearray(shards[2].read_bytes())
        data[-5] ^= 0xFF
        shards[2].write_bytes(bytes(data))  # a corrupt shard
        statuses.clear()
        download(http, job, tmp_path)
        assert sorted(statuses) == [200, 200, 206]  # manifest, shard 2 whole, shard 1's rest
        assert shards[1].read_bytes() == whole and not list(tmp_path.glob("*.part"))
        assert hashlib.sha256(shards[2].read_bytes()).hexdigest() == manifest["shards"][2]["sha256"]

    images, seeds, labels = read_shard(shards[0])
    assert images.shape == (12, 28, 28, 1) and seeds.tolist() == list(range(12))
    assert labels is not None and set(labels.tolist()) == {0, 9}

    with GanClient(url) as gan:
        kinds = [kind for kind, _ in gan.events(job)]  # an export's progress, as a job's
        assert kinds[0] == "start" and "progress" in kinds and kinds[-2:] == ["completed", "state"]
        assert gan.wait(job)["progress"]["images"] == 50
        gan.delete_export(job)  # the server's copy; the download stays
        with pytest.raises(NotFoundError):
            gan.job(job)
    assert read_shard(shards[0])[0].shape == (12, 28, 28, 1)


def test_a_failed_export_stops_the_download(models_dir: Path, start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = start_server(GAN_MODELS_DIR=str(models_dir)).url
    job = export(url, n=200_000, shard_size=100)
    assert httpx.delete(f"{url}/v1/jobs/{job}").status_code == 200
    wait_state(url, job, {"cancelled"})
    with httpx.Client(base_url=url) as http, pytest.raises(RuntimeError, match="cancelled"):
        download(http, job, tmp_path, poll=0.1)


def test_export_dataset_yields_every_image_once_in_seeded_batches(
    models_dir: Path, start_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = start_server(GAN_MODELS_DIR=str(models_dir)).url
    with httpx.Client(base_url=url) as http:
        manifest = download(http, export(url, format="tar"), tmp_path / "tar")
        download(http, export(url), tmp_path / "npz")
    for shard in manifest["shards"]:  # the two formats hold the same images
        a, b = (
            read_shard(tmp_path / "tar" / shard["name"]),
            read_shard(tmp_path / "npz" / shard["name"].replace(".tar", ".npz")),
        )
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]

    ds = GanDataset.from_export(tmp_path / "npz", batch_size=16, seed=3)
    batches = list(ds)
    assert [len(y) for _, y in batches] == [16, 16, 16, 2] and len(ds) == 4
    x, _ = batches[0]
    assert x.shape == (16, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    labels = sorted(int(v) for _, y in batches for v in y)
    assert labels == sorted(s % 10 for s in range(50))
    assert [
        y.tolist() for _, y in GanDataset.from_export(tmp_path / "npz", batch_size=16, seed=3)
    ] == [y.tolist() for _, y in batches]
    ds.set_epoch(1)
    assert [y.tolist() for _, y in ds] != [y.tolist() for _, y in batches]

    split = ExportDataset(tmp_path / "npz", batch_size=16, seed=3)
    loaded = list(DataLoader(split, batch_size=None, num_workers=2))
    assert sorted(int(v) for _, y in loaded for v in y) == labels  # workers split the shards
    in_order = list(ExportDataset(tmp_path / "npz", batch_size=50, shuffle=False))
    assert in_order[0][1].tolist() == [s % 10 for s in range(50)]


def test_an_export_dataset_needs_a_complete_labelled_export(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="manifest.json"):
        ExportDataset(tmp_path)
