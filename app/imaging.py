"""Images in and out: model tensors to uint8 pixels, encoders, and guarded upload decoding.

Model tensors are float32 [N, C, H, W] in the manifest's ``output_range``; pixels are uint8
[N, H, W, C] with C = 1 (grayscale) or 3 (RGB). Uploads are untrusted: ``decode_image``
checks byte and pixel limits before decoding, accepts PNG, JPEG and WebP only, and turns every
decoder failure into an ``app.errors`` exception.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import struct
import warnings
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import InvalidImage, LimitExceeded, UnsupportedMediaType

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
_ALLOWED_TEXT = "PNG, JPEG or WebP"
_MODES = {1: "L", 3: "RGB"}
# A fixed timestamp makes a ZIP of the same images byte-identical on every request.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# What Pillow's decoders raise on corrupt input, beyond OSError (truncation) and ValueError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def _check_range(output_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(output_range[0]), float(output_range[1])
    if not hi > lo:
        raise ValueError(f"output_range must be [lo, hi] with lo < hi, got {list(output_range)}")
    return lo, hi


def _check_pixels(images: np.ndarray, ndim: int) -> None:
    if images.dtype != np.uint8 or images.ndim != ndim or images.shape[-1] not in _MODES:
        layout = "[N, H, W, C]" if ndim == 4 else "[H, W, C]"
        raise ValueError(
            f"expected uint8 {layout} with C in (1, 3), got {images.dtype} {list(images.shape)}"
        )


def to_uint8(images: np.ndarray, output_range: tuple[float, float]) -> np.ndarray:
    """Model output float [N, C, H, W] in ``output_range`` -> uint8 [N, H, W, C].

    Values are clipped to the range, scaled to 0..255 and rounded half to even; NaN maps to 0.
    """
    lo, hi = _check_range(output_range)
    if images.ndim != 4 or images.shape[1] not in _MODES:
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


def decode_npy(data: bytes, max_bytes: int) -> np.ndarray:
    """Parse untrusted .npy bytes into an array, never unpickling anything.

    Raises LimitExceeded over ``max_bytes``, and InvalidImage for anything that is not a
    complete .npy file (npz archives, pickles, truncated data) or holds Python objects. The
    header is checked against the payload size before any memory is allocated for the array.
    """
    if len(data) > max_bytes:
        raise LimitExceeded(f"npy upload is {len(data)} bytes; the limit is {max_bytes}")
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"npy format version {version[0]}.{version[1]} is not supported")
    except ValueError as exc:
        raise InvalidImage(f"not a valid .npy file: {exc}") from exc
    if dtype.hasobject:
        raise InvalidImage("npy arrays of Python objects are refused; send a numeric dtype")
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - fp.tell()
    if got != expected:
        raise InvalidImage(
            f"npy header declares {list(shape)} {dtype} ({expected} bytes) but {got} bytes follow"
        )
    fp.seek(0)
    return np.lib.format.read_array(fp, allow_pickle=False)


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


@dataclass(frozen=True)
class DecodeLimits:
    """Upper bounds for one uploaded image, checked before its pixels are decoded.

    >>> DecodeLimits(max_bytes=10 * 2**20, max_pixels=4096 * 4096)
    DecodeLimits(max_bytes=10485760, max_pixels=16777216)
    """

    max_bytes: int
    max_pixels: int


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _open(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Open, check the declared size, then decode; every failure becomes an ApiError."""
    kind = _sniff(data) or "image"
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that; make it an error here without
    # touching the global limit. (catch_warnings is process-wide: a racing thread can at worst
    # see this warning raised too, which is what we want anyway.)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
            w, h = im.size
            if w * h > limits.max_pixels:
                raise LimitExceeded(
                    f"image is {w}x{h} = {w * h} pixels; the limit is {limits.max_pixels}"
                )
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise LimitExceeded(f"image exceeds the decompression-bomb limit: {exc}") from exc
        except UnidentifiedImageError as exc:
            if kind == "image":
                raise UnsupportedMediaType(
                    f"unsupported image format; upload {_ALLOWED_TEXT}"
                ) from exc
            raise InvalidImage(f"the {kind} file is corrupt or truncated") from exc
        except _DECODE_ERRORS as exc:
            raise InvalidImage(f"the {kind} file is corrupt or truncated: {exc}") from exc
    return im


def _convert(im: Image.Image, mode: str) -> Image.Image:
    if im.mode.startswith("I;16"):
        # 16-bit grayscale PNG: Pillow's convert clips at 255, so keep the high byte instead.
        im = Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))
    if im.mode == "P" or im.has_transparency_data:
        im = im.convert("RGBA")
    if "A" in im.mode or "a" in im.mode:
        # Composite onto black: transparent pixels become the background, not their stale RGB.
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return im.convert(mode)


def decode_image(
    data: bytes,
    *,
    limits: DecodeLimits,
    channels: int,
    size: tuple[int, int] | None = None,
    resize: bool = False,
) -> np.ndarray:
    """Decode an uploaded PNG, JPEG or WebP into uint8 [H, W, channels].

    ``channels`` 1 gives grayscale, 3 gives RGB; transparency is composited onto black, and
    EXIF orientation is applied. With ``size`` (H, W), an image of another size is resized
    (Lanczos) when ``resize`` is true and refused otherwise. Animated files give their first
    frame.

    Raises LimitExceeded (over ``limits``, checked before decoding pixels),
    UnsupportedMediaType (not one of the three formats) or InvalidImage (corrupt, truncated,
    wrong size).
    """
    if channels not in _MODES:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if len(data) > limits.max_bytes:
        raise LimitExceeded(f"image is {len(data)} bytes; the limit is {limits.max_bytes}")
    if not data:
        raise InvalidImage("the image is empty")
    im = _convert(_open(data, limits), _MODES[channels])
    if size is not None and im.size != (size[1], size[0]):
        if not resize:
            raise InvalidImage(
                f"image is {im.width}x{im.height}, the model takes {size[1]}x{size[0]}; "
                "pass resize=true to resize"
            )
        im = im.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    arr = np.array(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def decode_base64_image(
    s: str,
    *,
    limits: DecodeLimits,
    channels: int,
    size: tuple[int, int] | None = None,
    resize: bool = False,
) -> np.ndarray:
    """Decode a base64 image, plain or as a ``data:image/...;base64,`` URL; see decode_image.

    Whitespace and missing padding are tolerated. The decoded size is estimated from the text
    length and checked against ``limits.max_bytes`` before decoding.
    """
    payload = s
    if s.startswith("data:"):
        header, comma, payload = s.partition(",")
        if not comma or not header.endswith(";base64"):
            raise InvalidImage("a data URL must look like data:image/png;base64,<data>")
    compact = "".join(payload.split())
    if len(compact) // 4 * 3 > limits.max_bytes:
        raise LimitExceeded(
            f"image is about {len(compact) // 4 * 3} bytes; the limit is {limits.max_bytes}"
        )
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise InvalidImage(f"image is not valid base64: {exc}") from exc
    return decode_image(data, limits=limits, channels=channels, size=size, resize=resize)
