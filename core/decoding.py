"""Images in: guarded decoding of untrusted uploads (PNG, JPEG, WebP, base64, npy).

``decode_image`` checks byte and pixel limits before decoding, accepts PNG, JPEG and WebP only,
and turns every decoder failure into a ``core.errors`` exception; ``decode_npy`` never
unpickles and checks the declared shape against the bytes that follow.

    >>> pixels = decode_image(data, (1, 28, 28), DecodeLimits(2**20, 2**24), resize=True)
"""

from __future__ import annotations

import base64
import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core import npy
from core.errors import InvalidImage, LimitExceeded, UnsupportedMediaType
from core.imaging import MODES

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
_ALLOWED_TEXT = "PNG, JPEG or WebP"
# What Pillow's decoders raise on corrupt input, beyond OSError (truncation) and ValueError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def decode_npy(data: bytes, max_bytes: int) -> np.ndarray:
    """Parse untrusted .npy bytes into an array, never unpickling anything.

    Raises LimitExceeded over ``max_bytes``, and InvalidImage for anything that is not a
    complete .npy file of plain numbers (npz archives, pickles, object arrays, absurd shapes,
    truncated data). The header (core.npy) is checked against the payload size before any
    memory is allocated for the array.
    """
    if len(data) > max_bytes:
        raise LimitExceeded(f"npy upload is {len(data)} bytes; the limit is {max_bytes}")
    fp = io.BytesIO(data)
    try:
        header = npy.read_header(fp)
    except npy.NpyError as exc:
        raise InvalidImage(str(exc)) from exc
    got = len(data) - header.offset
    if got != header.nbytes:
        raise InvalidImage(
            f"npy header declares {list(header.shape)} {header.dtype} ({header.nbytes} bytes) "
            f"but {got} bytes follow"
        )
    return npy.read_data(fp, header)


@dataclass(frozen=True)
class DecodeLimits:
    """Upper bounds for one uploaded image, checked before its pixels are decoded.

    >>> DecodeLimits(max_bytes=10 * 2**20, max_pixels=4096 * 4096)
    DecodeLimits(max_bytes=10485760, max_pixels=16777216, max_side=8192)
    """

    max_bytes: int
    max_pixels: int
    # Each side too: Pillow keeps a pointer per row, and a 1x16,000,000 PNG within the pixel
    # limit took 0.5 s and 150 MB of row pointers to decode.
    max_side: int = 8192


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
            if max(w, h) > limits.max_side:
                raise LimitExceeded(
                    f"image is {w}x{h}; the limit is {limits.max_side} pixels a side"
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
    if channels not in MODES:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if len(data) > limits.max_bytes:
        raise LimitExceeded(f"image is {len(data)} bytes; the limit is {limits.max_bytes}")
    if not data:
        raise InvalidImage("the image is empty")
    im = _convert(_open(data, limits), MODES[channels])
    if size is not None and im.size != (size[1], size[0]):
        if not resize:
            raise InvalidImage(
                f"image is {im.width}x{im.height}, the model takes {size[1]}x{size[0]}; "
                "pass resize=true to resize"
            )
        # reducing_gap: a box reduction by whole factors first (linear in the pixels), then
        # Lanczos over at most 3x the target. Lanczos alone weighs every source pixel of a
        # row for each output pixel: a 16,000,000x1 image took 2.7 s and 800 MB to become
        # 28x28. Within 3x the result is plain Lanczos.
        im = im.resize((size[1], size[0]), Image.Resampling.LANCZOS, reducing_gap=3.0)
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
