"""The shard formats: the one writer of export shards (``gan_client.exports`` reads them).

``npz`` (the default): one uncompressed ``.npz`` per shard with

    images  uint8 [N, H, W, C]   the pixels /v1/sample returns as npy
    seeds   int64 [N]            image i's seed
    labels  int64 [N]            conditional models only

It is the default because it costs nothing to write (the export runs at the engine's speed:
no per-image encoding), loads with numpy alone straight into a training batch, and is the
smaller for small images: 800 bytes per 28x28 digit against tar's 3,074, where each of an
image's three members takes a 512-byte header and is padded to 512 bytes.

``tar``: a WebDataset shard, for pipelines built on tar streams: per image, in this order,

    <key>.png    the image (grey or RGB)
    <key>.cls    the label as decimal text (conditional models only)
    <key>.json   {"seed": ..., "label": ...}

with ``key`` the seed, zero-padded to 12 digits, so keys sort as seeds do.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import BinaryIO

import numpy as np
from PIL import Image

from app.exports.plan import ShardFormat


def write(
    fmt: ShardFormat,
    out: BinaryIO,
    images: np.ndarray,
    seeds: np.ndarray,
    labels: np.ndarray | None,
) -> None:
    """Write one shard of uint8 ``images`` [N, H, W, C] to the open file ``out``."""
    if fmt == "npz":
        arrays = {"images": images, "seeds": seeds.astype(np.int64)}
        if labels is not None:
            arrays["labels"] = labels.astype(np.int64)
        np.savez(out, **arrays)  # type: ignore[arg-type]
    else:
        _write_tar(out, images, seeds, labels)


def _write_tar(
    out: BinaryIO, images: np.ndarray, seeds: np.ndarray, labels: np.ndarray | None
) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i, seed in enumerate(seeds.tolist()):
            key = f"{seed:012d}"
            label = None if labels is None else int(labels[i])
            image = images[i, :, :, 0] if images.shape[3] == 1 else images[i]
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG", compress_level=1)
            members = [(f"{key}.png", png.getvalue())]
            if label is not None:
                members.append((f"{key}.cls", str(label).encode()))
            members.append((f"{key}.json", json.dumps({"seed": seed, "label": label}).encode()))
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
