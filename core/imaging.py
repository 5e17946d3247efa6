"""Images out: model tensors to uint8 pixels, and the encoders (PNG, GIF, WebP, npy, zip).

Model tensors are float32 [N, C, H, W] in the manifest's ``output_range``; pixels are uint8
[N, H, W, C] with C = 1 (grayscale) or 3 (RGB). What comes in from users is decoded apart,
under limits, in ``core.decoding``.

    >>> png = encode_png(to_uint8(images, (-1.0, 1.0))[0])
"""

from __future__ import annotations

import functools
import io
import json
import math
import zipfile
from typing import Any

import numpy as np
from PIL import Image

MODES = {1: "L", 3: "RGB"}  # Pillow's mode for each channel count
# A fixed timestamp makes a ZIP of the same images byte-identical on every request.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _check_range(output_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(output_range[0]), float(output_range[1])
    if not hi > lo:
        raise ValueError(f"output_range must be [lo, hi] with lo < hi, got {list(output_range)}")
    return lo, hi


def _check_pixels(images: np.ndarray, ndim: int) -> None:
    if images.dtype != np.uint8 or images.ndim != ndim or images.shape[-1] not in MODES:
        layout = "[N, H, W, C]" if ndim == 4 else "[H, W, C]"
        raise ValueError(
            f"expected uint8 {layout} with C in (1, 3), got {images.dtype} {list(images.shape)}"
        )


def to_uint8(images: np.ndarray, output_range: tuple[float, float]) -> np.ndarray:
    """Model output float [N, C, H, W] in ``output_range`` -> uint8 [N, H, W, C].

    Values are clipped to the range, scaled to 0..255 and rounded half to even; NaN maps to 0.
    """
    lo, hi = _check_range(output_range)
    if images.ndim != 4 or images.shape[1] not in MODES:
        raise ValueError(f"expected [N, C, H, W] with C in (1, 3), got {list(images.shape)}")
    # fmax/fmin clip like np.clip but map NaN to the bound (fmax(NaN, lo) is lo, so pixel 0),
    # and in-place arithmetic keeps this a handful of ufunc calls (it runs per engine batch).
    x = np.fmin(np.fmax(images.astype(np.float32, copy=False), lo), hi)
    x -= lo
    x /= hi - lo
    x *= 255.0
    np.rint(x, out=x)
    return np.ascontiguousarray(x.astype(np.uint8).transpose(0, 2, 3, 1))


def to_model_input(images_u8: np.ndarray, output_range: tuple[float, float]) -> np.ndarray:
    """Pixels uint8 [N, H, W, C] -> float32 [N, C, H, W] in ``output_range``; inverts to_uint8."""
    lo, hi = _check_range(output_range)
    _check_pixels(images_u8, 4)
    x = images_u8.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x * np.float32(hi - lo) + np.float32(lo))


def _to_pil(img: np.ndarray) -> Image.Image:
    _check_pixels(img, 3)
    return Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)


def encode_png(img: np.ndarray) -> bytes:
    """Encode one uint8 [H, W, C] image as PNG (C=1: grayscale, C=3: RGB)."""
    buf = io.BytesIO()
    _to_pil(img).save(buf, format="PNG")
    return buf.getvalue()


def encode_webp(img: np.ndarray) -> bytes:
    """Encode one uint8 [H, W, C] image as lossless WebP (grayscale is stored as RGB)."""
    buf = io.BytesIO()
    _to_pil(img).save(buf, format="WEBP", lossless=True)
    return buf.getvalue()


def grid(
    images: np.ndarray, cols: int | None = None, pad: int = 2, pad_value: int = 0
) -> np.ndarray:
    """Tile uint8 [N, H, W, C] into one uint8 image, row by row.

    ``cols`` defaults to ceil(sqrt(N)) and is capped at N. ``pad`` pixels of ``pad_value``
    surround every tile, borders included, so the result is
    [rows * (H + pad) + pad, cols * (W + pad) + pad, C].
    """
    _check_pixels(images, 4)
    n, h, w, c = images.shape
    if n < 1:
        raise ValueError("grid needs at least one image")
    if pad < 0 or not 0 <= pad_value <= 255:
        raise ValueError(f"pad must be >= 0 and pad_value in 0..255, got {pad}, {pad_value}")
    cols = math.ceil(math.sqrt(n)) if cols is None else cols
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        y = pad + (i // cols) * (h + pad)
        x = pad + (i % cols) * (w + pad)
        out[y : y + h, x : x + w] = images[i]
    return out


def strip(frames: np.ndarray, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """Lay uint8 [N, H, W, C] frames out left to right as one image (a one-row grid)."""
    return grid(frames, cols=len(frames), pad=pad, pad_value=pad_value)


def _frames(frames: np.ndarray) -> list[Image.Image]:
    _check_pixels(frames, 4)
    if len(frames) < 1:
        raise ValueError("an animation needs at least one frame")
    return [_to_pil(f) for f in frames]


def encode_gif(frames: np.ndarray, duration_ms: int = 100, loop: int = 0) -> bytes:
    """Encode uint8 [N, H, W, C] frames as an animated GIF; ``loop=0`` repeats forever.

    GIF holds 256 colours per frame, so RGB frames are quantised. Pillow merges identical
    consecutive frames into one longer frame.
    """
    first, *rest = _frames(frames)
    buf = io.BytesIO()
    first.save(
        buf, format="GIF", save_all=True, append_images=rest, duration=duration_ms, loop=loop
    )
    return buf.getvalue()


def encode_animated_webp(frames: np.ndarray, duration_ms: int = 100, loop: int = 0) -> bytes:
    """Encode uint8 [N, H, W, C] frames as a lossless animated WebP; ``loop=0`` repeats forever."""
    first, *rest = _frames(frames)
    buf = io.BytesIO()
    first.save(
        buf,
        format="WEBP",
        save_all=True,
        append_images=rest,
        duration=duration_ms,
        loop=loop,
        lossless=True,
    )
    return buf.getvalue()


def encode_npy(arr: np.ndarray) -> bytes:
    """Serialise an array in the .npy format (C order: np.save's bytes for C-ordered arrays).

    Arrays of Python objects are refused. The header depends only on dtype and shape, so it
    is built once per pair: np.save rebuilds it each call, at a cost that dominates n=1.
    """
    if arr.dtype.hasobject:
        raise ValueError("arrays of Python objects have no .npy form without pickle")
    return _npy_header(arr.dtype, arr.shape) + np.ascontiguousarray(arr).tobytes()


@functools.lru_cache(maxsize=256)
def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def encode_zip(images: np.ndarray, names: list[str], manifest: dict[str, Any]) -> bytes:
    """Pack uint8 [N, H, W, C] images as PNGs named ``names``, plus ``manifest.json``.

    Entries are stored uncompressed (PNG is compressed already) with a fixed timestamp, so the
    same inputs give the same bytes.
    """
    _check_pixels(images, 4)
    if len(names) != len(images):
        raise ValueError(f"{len(images)} images but {len(names)} names")
    if len(set(names)) != len(names) or "manifest.json" in names:
        raise ValueError("image names must be unique and must not be 'manifest.json'")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        entries = [(name, encode_png(img)) for name, img in zip(names, images, strict=True)]
        entries.append(("manifest.json", json.dumps(manifest, indent=2).encode()))
        for name, payload in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16  # rw-r--r-- when unpacked
            zf.writestr(info, payload)
    return buf.getvalue()
