"""Labelled synthetic batches from gan-serve, as a PyTorch ``IterableDataset``.

Training-side only: this module needs torch (``pip install 'gan-serve[train]'``), and nothing
on the serving path imports it. :class:`GanDataset` draws from the live service through
``gan_client.client``; :class:`ExportDataset` (``GanDataset.from_export``) reads a bulk export
downloaded to disk (``gan_client.exports``), with no server at all.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from gan_client.client import GanClient
from gan_client.exports import MANIFEST, read_shard

Batch = tuple[torch.Tensor, torch.Tensor]
# The API's largest seed is 2**63 - 1 and image i of a batch uses base + i; bases drawn below
# 2**62 leave room for any batch size.
_SEED_BITS = 62


@dataclass(frozen=True)
class _Failure:
    error: Exception


class _End:
    """The producer's last item: the stream is complete."""


_Item = Batch | _Failure | _End


class GanDataset(IterableDataset[Batch]):
    """An endless (or ``num_batches`` long) stream of class-labelled synthetic image batches.

    Yields ``(images, labels)``: float32 [B, C, H, W] in [0, 1] and int64 [B]. The stream is a
    function of ``seed`` alone: global batch ``b`` draws its images from seeds and labels
    derived from ``(seed, b)``, so it is the same however it is prefetched or split across
    DataLoader workers (worker w of W yields batches w, w + W, ...). Labels cycle through the
    classes (``(b * B + arange(B)) % K``) unless ``label_mix`` gives class weights, in which
    case they are drawn from them. The model and version are resolved once, here, so every
    worker and every epoch draws from the same version even if production moves meanwhile.

    Example::

        ds = GanDataset("http://127.0.0.1:8000", model="mnist-cdcgan", batch_size=128,
                        num_batches=40, seed=1)
        for images, labels in DataLoader(ds, batch_size=None, num_workers=2):
            ...  # images [128, 1, 28, 28], labels [128]
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        version: int | str | None = None,
        batch_size: int = 64,
        num_batches: int | None = None,
        seed: int = 0,
        label_mix: Sequence[float] | None = None,
        api_key: str | None = None,
        prefetch: int = 2,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or prefetch < 1 or seed < 0:
            raise ValueError("batch_size and prefetch must be >= 1, and seed >= 0")
        if num_batches is not None and num_batches < 0:
            raise ValueError(f"num_batches must be >= 0 or None, got {num_batches}")
        with GanClient(base_url, api_key=api_key) as client:
            manifest = client.resolve(model, version)
        self.base_url = base_url
        self.api_key = api_key
        self.model: str = manifest["name"]
        self.version: int = manifest["version"]
        self.num_classes: int = manifest["num_classes"]
        c, h, w = manifest["image_shape"]
        self.image_shape = (c, h, w)
        if self.num_classes < 1:
            raise ValueError(f"{self.model} is unconditional: a labelled stream needs classes")
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.seed = seed
        self.label_mix = None if label_mix is None else _weights(label_mix, self.num_classes)
        self.prefetch = prefetch
        self.transform = transform

    @classmethod
    def from_export(
        cls,
        folder: str | Path,
        *,
        batch_size: int = 64,
        shuffle: bool = True,
        seed: int = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> ExportDataset:
        """The same batches, from an export downloaded to ``folder``
        (``GanClient.download_export``) instead of the live service."""
        return ExportDataset(
            folder, batch_size=batch_size, shuffle=shuffle, seed=seed, transform=transform
        )

    def plan(self, b: int) -> tuple[int, np.ndarray]:
        """Global batch ``b``'s base seed and labels: a function of ``(seed, b)`` alone."""
        base = int(np.random.SeedSequence([self.seed, b]).generate_state(1, np.uint64)[0])
        base >>= 64 - _SEED_BITS
        if self.label_mix is None:
            labels = (b * self.batch_size + np.arange(self.batch_size)) % self.num_classes
        else:
            rng = np.random.default_rng([self.seed, b])
            labels = rng.choice(self.num_classes, size=self.batch_size, p=self.label_mix)
        return base, labels.astype(np.int64)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        batches: Iterable[int] = (
            itertools.count(worker, workers)
            if self.num_batches is None
            else range(worker, self.num_batches, workers)
        )
        out: queue.Queue[_Item] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        thread = threading.Thread(
            target=self._produce, args=(batches, out, stop), name="gan-prefetch", daemon=True
        )
        thread.start()
        try:
            while True:
                item = out.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            # Runs when the stream ends, fails, or the consumer drops or closes the iterator.
            stop.set()
            thread.join()

    def _produce(
        self, batches: Iterable[int], out: queue.Queue[_Item], stop: threading.Event
    ) -> None:
        """The prefetch thread: fetch batches in order until done or told to stop."""
        try:
            # The thread owns its client, so it is closed here and never used by two threads.
            with GanClient(self.base_url, api_key=self.api_key) as client:
                for b in batches:
                    if not _put(out, self._fetch(client, b), stop):
                        return
            _put(out, _End(), stop)
        except Exception as e:  # raised again in the consumer, where someone can handle it
            _put(out, _Failure(e), stop)

    def _fetch(self, client: GanClient, b: int) -> Batch:
        base, labels = self.plan(b)
        images, served = client.sample(
            self.batch_size,
            seed=base,
            labels=labels,
            model=self.model,
            version=self.version,
        )
        if served is None or not np.array_equal(served, labels):
            raise RuntimeError(f"{self.model} v{self.version} did not draw the labels asked for")
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # [B, C, H, W]
        x = x.to(torch.float32).div_(255)
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.from_numpy(labels)


class ExportDataset(IterableDataset[Batch]):
    """Every image of a downloaded export once per pass, as ``(images, labels)`` batches:
    float32 [B, C, H, W] in [0, 1] and int64 [B], like :class:`GanDataset`.

    DataLoader worker w of W reads shards w, w + W, ...; with ``shuffle``, the shard order and
    the images within each shard are permuted by ``seed`` (and by the epoch, which
    :meth:`set_epoch` sets), so a pass is the same however it is split across workers. Only
    the last batch of a pass may be short. One shard is in memory at a time.

    Example::

        gan.download_export(job_id, "digits")
        for images, labels in DataLoader(GanDataset.from_export("digits"), batch_size=None):
            ...
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        batch_size: int = 64,
        shuffle: bool = True,
        seed: int = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.folder = Path(folder)
        try:
            manifest = json.loads((self.folder / MANIFEST).read_text())
        except FileNotFoundError as e:
            raise ValueError(f"{folder} holds no complete export ({MANIFEST} is missing)") from e
        if not manifest["model"]["num_classes"]:
            raise ValueError(f"{manifest['model']['name']} is unconditional: no labels to train on")
        self.shards = [self.folder / s["name"] for s in manifest["shards"]]
        self.num_images = int(manifest["images"])
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.transform = transform

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches in a pass over the whole export (with one worker)."""
        return -(-self.num_images // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.shards)) if self.shuffle else range(len(self.shards))
        x_left = np.empty((0, 0, 0, 0), dtype=np.uint8)  # a short batch carried on
        y_left = np.empty(0, dtype=np.int64)
        for i in list(order)[worker::workers]:
            x, _, y = read_shard(self.shards[i])
            if y is None:
                raise ValueError(f"{self.shards[i].name} has no labels")
            if self.shuffle:
                within = np.random.default_rng([self.seed, self.epoch, int(i)]).permutation(len(y))
                x, y = x[within], y[within]
            if len(y_left):
                x, y = np.concatenate([x_left, x]), np.concatenate([y_left, y])
            whole = len(y) - len(y) % self.batch_size
            for start in range(0, whole, self.batch_size):
                rows = slice(start, start + self.batch_size)
                yield self._batch(x[rows], y[rows])
            x_left, y_left = x[whole:], y[whole:]
        if len(y_left):
            yield self._batch(x_left, y_left)

    def _batch(self, images: np.ndarray, labels: np.ndarray) -> Batch:
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        x = x.to(torch.float32).div_(255)
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.from_numpy(labels.astype(np.int64))


def _weights(mix: Sequence[float], k: int) -> np.ndarray:
    p = np.asarray(mix, dtype=np.float64)
    if p.shape != (k,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"label_mix must hold {k} non-negative weights, not all zero")
    return p / p.sum()


def _put(out: queue.Queue[_Item], item: _Item, stop: threading.Event) -> bool:
    """Put ``item``, waiting for room; False if told to stop first (the consumer is gone)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
