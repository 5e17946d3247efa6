"""Uploaded training datasets: validated, normalised to npz, stored under the data directory.

An upload is a zip of images (one folder per class) or an npz with ``images``/``labels``. Zips
are checked before anything is extracted: entry count, declared and actual sizes, compression
ratio, and names (no absolute paths, no ``..``, no symlinks, exactly ``<class>/<file>``).
The result is loaded by the training package's own loader, so a dataset that is accepted
here is one training can read.

    <data_dir>/datasets/<id>/dataset.npz    images uint8 [N, C, H, W] or [N, H, W], labels
    <data_dir>/datasets/<id>/meta.json      id, name, classes, size, image shape, sha256
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from core import identifiers
from core.datasets import IMAGE_SUFFIXES, DatasetError, DatasetTooLarge, load_dataset
from core.errors import InvalidInput, LimitExceeded, NotFound

# What zipfile raises on a corrupt, truncated, encrypted or exotic archive (bad CRC or magic,
# broken deflate data, unsupported method or version, password needed, nonsense offsets).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    IndexError,
)


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int  # of the upload itself
    max_files: int  # images in a zip
    max_unpacked_bytes: int  # a zip's total uncompressed size
    max_pixels: int  # decoded pixel values of all images (H x W x C, summed)
    max_ratio: float = 200.0  # uncompressed / compressed, per entry: a bomb's signature


class DatasetStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "datasets"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, dataset_id: str) -> Path:
        """The npz a job config points at."""
        if not (self.root / identifiers.dataset_id(dataset_id) / "meta.json").is_file():
            raise NotFound(f"no dataset {dataset_id!r}", field="dataset")
        return self.root / dataset_id / "dataset.npz"

    def list(self) -> list[dict[str, Any]]:
        out = []
        for folder in sorted(self.root.iterdir()):
            meta = folder / "meta.json"
            if meta.is_file():
                out.append(json.loads(meta.read_text()))
        return sorted(out, key=lambda m: m["created"], reverse=True)

    def add(self, name: str, data: bytes, limits: UploadLimits) -> dict[str, Any]:
        if len(data) > limits.max_bytes:
            raise LimitExceeded(f"the upload is over {limits.max_bytes} bytes", field="file")
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".upload-") as tmp:
            work = Path(tmp)
            kind = _kind(data, limits)
            if kind == "zip":
                _extract_zip(data, work / "images", limits)
                source = work / "images"
            else:
                source = work / "upload.npz"
                source.write_bytes(data)
            try:
                ds = load_dataset(str(source), max_pixels=limits.max_pixels)
            except DatasetTooLarge as e:
                raise LimitExceeded(str(e), field="file") from e
            except DatasetError as e:
                raise InvalidInput(f"not a usable dataset: {e}", field="file") from e
            if len(ds.labels) > limits.max_files:
                raise LimitExceeded(f"{len(ds.labels)} images is over {limits.max_files}")
            dataset_id = uuid.uuid4().hex[:12]
            out = work / "out"
            out.mkdir()
            np.savez(out / "dataset.npz", images=ds.images, labels=ds.labels)
            meta = {
                "id": dataset_id,
                "name": name,
                "created": time.time(),
                "size": len(ds.labels),
                "num_classes": ds.num_classes,
                "class_names": ds.class_names,
                "image_shape": list(ds.image_shape),
                "sha256": ds.sha256(),
            }
            (out / "meta.json").write_text(json.dumps(meta, indent=2))
            os.chmod(out, 0o755)
            os.rename(out, self.root / dataset_id)  # whole or not at all
        return meta


def _kind(data: bytes, limits: UploadLimits) -> str:
    """ "npz" or "zip" (an npz is a zip of .npy members), or a clear refusal."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except _ZIP_ERRORS as e:
        raise InvalidInput("upload a .zip of class folders or an .npz", field="file") from e
    if infos and all(i.filename.endswith(".npy") for i in infos):
        if sum(i.file_size for i in infos) > limits.max_unpacked_bytes:
            raise LimitExceeded(f"the npz unpacks to over {limits.max_unpacked_bytes} bytes")
        return "npz"
    return "zip"


def _extract_zip(data: bytes, dest: Path, limits: UploadLimits) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as e:
        raise InvalidInput(f"not a readable zip: {e}", field="file") from e
    with archive:
        # Not ZipInfo.is_dir(): it raises IndexError on an empty name, which a forged zip can have.
        infos = [i for i in archive.infolist() if not i.filename.endswith("/")]
        if len(infos) > limits.max_files:
            raise LimitExceeded(
                f"the zip holds {len(infos)} files; the limit is {limits.max_files}"
            )
        if sum(i.file_size for i in infos) > limits.max_unpacked_bytes:
            raise LimitExceeded(f"the zip unpacks to over {limits.max_unpacked_bytes} bytes")
        dest.mkdir()
        total = 0
        for info in infos:
            parts = _safe_parts(info)
            if parts is None:  # macOS resource forks and dot-files are not images
                continue
            if info.file_size > max(info.compress_size, 1) * limits.max_ratio:
                raise LimitExceeded(f"{info.filename}: compression ratio suggests a zip bomb")
            target = dest.joinpath(*parts)
            target.parent.mkdir(exist_ok=True)
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    # Count real bytes: a forged header can understate the size.
                    while chunk := src.read(1 << 16):
                        total += len(chunk)
                        if total > limits.max_unpacked_bytes:
                            raise LimitExceeded("the zip unpacks to more than its headers declare")
                        dst.write(chunk)
            except _ZIP_ERRORS as e:
                raise InvalidInput(f"{info.filename}: not readable: {e}", field="file") from e
    if not any(dest.iterdir()):
        shutil.rmtree(dest)
        raise InvalidInput("the zip holds no images in class folders", field="file")


def _safe_parts(info: zipfile.ZipInfo) -> tuple[str, str] | None:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InvalidInput(f"{name}: symbolic links are not allowed", field="file")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or ":" in name:
        raise InvalidInput(f"{name}: paths must stay inside the archive", field="file")
    parts = [p for p in path.parts if p not in ("", ".")]
    if any(len(p.encode()) > 255 for p in parts):  # past NAME_MAX the extraction itself fails
        raise InvalidInput(f"{name[:80]}...: a name in it is over 255 bytes", field="file")
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    if len(parts) == 3:  # one top folder wrapping the class folders, as zip tools often make
        parts = parts[1:]
    if len(parts) != 2:
        raise InvalidInput(f"{name}: expected <class>/<image>", field="file")
    if PurePosixPath(parts[1]).suffix.lower() not in IMAGE_SUFFIXES:
        raise InvalidInput(f"{name}: not an image ({sorted(IMAGE_SUFFIXES)})", field="file")
    return parts[0], parts[1]
