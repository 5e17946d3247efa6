"""Datasets: the built-in MNIST subset, npz, image folders and IDX files.

Every loader returns a :class:`Dataset` of uint8 images [N, C, H, W] and int64 labels,
so networks, the held-out split and the manifest see one shape whatever the source.

    >>> ds = load_dataset("builtin:mnist")
    >>> train, held_out = ds.split(0.1, seed=0)
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core import npy

BUILTIN = {"mnist": Path(__file__).parent / "data" / "mnist_5k.npz"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MAX_SIDE = 256
# What np.load raises on a corrupt npz (a zip of .npy files) beyond OSError and ValueError.
_NPZ_ERRORS = (
    EOFError,
    SyntaxError,
    NotImplementedError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
    tokenize.TokenError,
)
# What Pillow raises on a corrupt image (OSError: truncated or unidentified files).
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


class DatasetError(ValueError):
    """A dataset that is missing, empty, unreadable or mis-shaped."""


class DatasetTooLarge(DatasetError):
    """A dataset whose images decode to more pixel values than the caller allows."""


@dataclass(frozen=True)
class Dataset:
    name: str
    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int64 [N]
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def sha256(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()

    def split(self, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """A stratified, seeded split: the same (fraction, seed) gives the same held-out set."""
        rng = np.random.default_rng(seed)
        held: list[np.ndarray] = []
        for c in range(self.num_classes):
            idx = np.flatnonzero(self.labels == c)
            rng.shuffle(idx)
            held.append(idx[: max(1, round(len(idx) * val_fraction))] if len(idx) > 1 else idx[:0])
        held_idx = np.sort(np.concatenate(held))
        mask = np.ones(len(self.labels), dtype=bool)
        mask[held_idx] = False
        train_idx = np.flatnonzero(mask)
        if len(train_idx) == 0 or len(held_idx) == 0:
            raise DatasetError(f"{self.name}: too few images ({len(self.labels)}) to split")
        return self._subset(train_idx, "train"), self._subset(held_idx, "held-out")

    def _subset(self, idx: np.ndarray, part: str) -> Dataset:
        return Dataset(f"{self.name}[{part}]", self.images[idx], self.labels[idx], self.class_names)


def load_dataset(source: str, *, max_pixels: int | None = None) -> Dataset:
    """Load ``builtin:<name>``, an ``.npz``, an image folder or an IDX images file.

    With ``max_pixels``, DatasetTooLarge before the images would decode to more pixel values
    (height x width x channels, summed: the bytes they take) than that: npz headers and image
    headers are read first, so a small file that unpacks to gigabytes is refused unread.
    """
    if source.startswith("builtin:"):
        key = source.removeprefix("builtin:")
        if key not in BUILTIN:
            raise DatasetError(f"unknown built-in dataset {key!r}; known: {', '.join(BUILTIN)}")
        ds = _load_npz(BUILTIN[key])
        return Dataset(source, ds.images, ds.labels, ds.class_names)
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"dataset {source!r} does not exist")
    if path.is_dir():
        return _load_folder(path, max_pixels)
    if path.suffix == ".npz":
        return _load_npz(path, max_pixels)
    if "idx" in path.name or "ubyte" in path.name:
        return _load_idx(path)
    raise DatasetError(f"{source!r}: expected a folder, an .npz or an IDX (*-idx3-ubyte) file")


def _finish(name: str, images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Dataset:
    if images.ndim == 3:  # [N, H, W] -> [N, 1, H, W]
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DatasetError(f"{name}: images must be [N, H, W] or [N, H, W, C] with C in (1, 3)")
    if len(images) == 0:
        raise DatasetError(f"{name}: the dataset is empty")
    if images.dtype != np.uint8:
        raise DatasetError(f"{name}: images must be uint8, got {images.dtype}")
    h, w = images.shape[2:]
    if not (4 <= h <= MAX_SIDE and 4 <= w <= MAX_SIDE):
        raise DatasetError(f"{name}: image size {h}x{w} is outside 4..{MAX_SIDE}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{name}: labels must be integers, one per image")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DatasetError(f"{name}: labels must lie in 0..{len(class_names) - 1}")
    return Dataset(name, np.ascontiguousarray(images), labels.astype(np.int64), class_names)


def _load_npz(path: Path, max_pixels: int | None = None) -> Dataset:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "images.npy" not in names or "labels.npy" not in names:
                raise DatasetError(f"{path}: an npz dataset needs arrays 'images' and 'labels'")
            images = _read_member(archive, "images", max_pixels)
            labels = _read_member(archive, "labels", None)
    except DatasetError:
        raise
    except (OSError, ValueError, *_NPZ_ERRORS) as e:
        raise DatasetError(f"{path}: not a readable npz file ({e})") from e
    if labels.ndim != 1 or len(labels) == 0:
        raise DatasetError(f"{path}: 'labels' must be a non-empty 1-D array")
    n = int(labels.max()) + 1 if np.issubdtype(labels.dtype, np.integer) else 0
    return _finish(path.name, images, labels, [str(i) for i in range(n)])


def _read_member(archive: zipfile.ZipFile, key: str, max_pixels: int | None) -> np.ndarray:
    """One array of an npz, its declared shape checked before its data is read."""
    info = archive.getinfo(f"{key}.npy")
    with archive.open(info) as member:
        try:
            header = npy.read_header(member)
        except npy.NpyError as e:
            raise DatasetError(f"'{key}': {e}") from e
        shape = list(header.shape)
        if header.nbytes > info.file_size:  # zipfile never reads past the declared size
            raise DatasetError(f"'{key}' declares {shape} but holds {info.file_size} bytes")
        if max_pixels is not None and header.size > max_pixels:
            raise DatasetTooLarge(
                f"'{key}' {shape} is {header.size} pixel values; the limit is {max_pixels}"
            )
        try:
            return npy.read_data(member, header)
        except npy.NpyError as e:
            raise DatasetError(f"'{key}': {e}") from e


def _load_folder(path: Path, max_pixels: int | None = None) -> Dataset:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{path}: an image folder needs one sub-folder per class")
    images: list[np.ndarray] = []
    labels: list[int] = []
    pixels = 0
    for label, cls in enumerate(classes):
        for file in sorted((path / cls).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as im:
                    # Checked on the header, before a small file decodes into a huge array.
                    if max(im.size) > MAX_SIDE:
                        raise DatasetError(
                            f"{file}: image size {im.width}x{im.height} is over {MAX_SIDE}"
                        )
                    mode = "L" if im.mode in ("1", "L", "LA", "I", "I;16") else "RGB"
                    pixels += im.width * im.height * len(mode)
                    if max_pixels is not None and pixels > max_pixels:
                        # Small, highly compressed files add up: bound the sum, not each one.
                        raise DatasetTooLarge(
                            f"the images decode to over {max_pixels} pixel values "
                            "(height x width x channels, summed)"
                        )
                    images.append(np.asarray(im.convert(mode)))
            except DatasetError:
                raise
            except (UnidentifiedImageError, Image.DecompressionBombError, *_IMAGE_ERRORS) as e:
                raise DatasetError(f"{file}: not a readable image ({e})") from e
            labels.append(label)
    if not images:
        raise DatasetError(f"{path}: no images found (looked for {sorted(IMAGE_SUFFIXES)})")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DatasetError(f"{path}: images differ in size or channels: {sorted(shapes)[:3]}")
    return _finish(path.name, np.stack(images), np.asarray(labels), classes)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"{path}: unreadable ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: IDX header says {tuple(dims)} but the data does not match")
    return body.reshape(tuple(dims))


def _load_idx(path: Path) -> Dataset:
    labels_path = path.with_name(path.name.replace("images", "labels").replace("idx3", "idx1"))
    if labels_path == path or not labels_path.exists():
        raise DatasetError(f"{path}: no labels file next to it (expected {labels_path.name})")
    images, labels = _read_idx(path), _read_idx(labels_path)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    return _finish(path.name, images, labels, [str(i) for i in range(int(labels.max()) + 1)])
