"""GanDataset against the real server, and the augmentation example end to end."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_client import GanClient, InvalidRequestError, NotFoundError
from gan_client.dataset import GanDataset
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[2]


def _prefetchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gan-prefetch"]


def _key(batch: tuple[torch.Tensor, torch.Tensor]) -> bytes:
    return batch[0].numpy().tobytes() + batch[1].numpy().tobytes()


def test_stream_is_deterministic_balanced_and_in_range(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    baseline = threading.active_count()
    one = list(GanDataset(server.url, model="tiny-cgan", batch_size=6, num_batches=3, seed=4))
    two = list(GanDataset(server.url, model="tiny-cgan", batch_size=6, num_batches=3, seed=4))
    other = list(GanDataset(server.url, model="tiny-cgan", batch_size=6, num_batches=3, seed=5))
    assert threading.active_count() == baseline and not _prefetchers()
    assert len(one) == 3 and [_key(b) for b in one] == [_key(b) for b in two]
    assert all(_key(a) != _key(b) for a, b in zip(one, other, strict=True))
    for b, (images, labels) in enumerate(one):
        assert images.dtype == torch.float32 and images.shape == (6, 1, 28, 28)
        assert 0 <= images.min() and images.max() <= 1
        assert labels.dtype == torch.int64
        assert labels.tolist() == ((b * 6 + np.arange(6)) % 10).tolist()  # classes in turn
    # Batch b is what the service draws for its planned seed and labels, whoever asks.
    ds = GanDataset(server.url, model="tiny-cgan", batch_size=6, seed=4)
    base, labels = ds.plan(2)
    with GanClient(server.url) as gan:
        images, _ = gan.sample(6, seed=base, labels=labels, model="tiny-cgan")
    np.testing.assert_array_equal(one[2][0], images.transpose(0, 3, 1, 2) / np.float32(255))


def test_label_mix_and_transform(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    mix = [0, 0, 3, 0, 0, 0, 0, 1, 0, 0]  # weights: three 2s for every 7

    def stream(**extra: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(
            GanDataset(
                server.url, model="tiny-cgan", batch_size=64, num_batches=2, label_mix=mix, **extra
            )
        )

    a = stream(transform=lambda x: 1 - x)
    b = stream()
    labels = torch.cat([y for _, y in a])
    assert set(labels.tolist()) == {2, 7} and (labels == 2).sum() > (labels == 7).sum()
    assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b]
    torch.testing.assert_close(a[0][0], 1 - b[0][0])
    with pytest.raises(ValueError, match="unconditional"):
        GanDataset(server.url, model="tiny-gan")
    with pytest.raises(ValueError, match="label_mix"):
        GanDataset(server.url, model="tiny-cgan", label_mix=[1.0, 2.0])
    with pytest.raises(NotFoundError):
        GanDataset(server.url, model="nope")
    too_big = GanDataset(server.url, model="tiny-cgan")
    too_big.batch_size = 5000  # over GAN_MAX_N: the prefetch thread's error reaches the consumer
    with pytest.raises(InvalidRequestError, match="over the limit"):
        next(iter(too_big))
    assert not _prefetchers()


def test_workers_share_the_stream_without_duplicates(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    ds = GanDataset(server.url, model="tiny-cgan", batch_size=4, num_batches=5, seed=1)
    single = {_key(b) for b in ds}
    sharded = [_key(b) for b in DataLoader(ds, batch_size=None, num_workers=2)]
    assert len(single) == 5 and len(sharded) == 5 and set(sharded) == single


def test_prefetch_thread_stops_when_iteration_stops(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    baseline = threading.active_count()
    endless = GanDataset(server.url, model="tiny-cgan", batch_size=2, prefetch=1)
    stream = iter(endless)
    for _ in range(3):
        next(stream)
    assert len(_prefetchers()) == 1
    stream.close()  # what a consumer that breaks out of its loop does, through garbage collection
    assert threading.active_count() == baseline and not _prefetchers()
    for i, _ in enumerate(endless):
        if i == 2:
            break
    assert threading.active_count() == baseline and not _prefetchers()


def test_example_trains_with_and_without_synthetic_digits(  # type: ignore[no-untyped-def]
    models_dir: Path, start_server
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    args = ["--url", server.url, "--model", "tiny-cgan", "--synthetic", "200", "--epochs", "1"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "augment_classifier.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    accuracies = [float(a) for a in re.findall(r"accuracy (\d\.\d+)", out.stdout)]
    assert len(accuracies) == 2 and all(0 <= a <= 1 for a in accuracies), out.stdout
    assert "200 from tiny-cgan" in out.stdout
