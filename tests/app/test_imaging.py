from __future__ import annotations

import base64
import io
import json
import pickle
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image, ImageSequence

from core.decoding import DecodeLimits, decode_base64_image, decode_image, decode_npy
from core.errors import InvalidImage, LimitExceeded, UnsupportedMediaType
from core.imaging import (
    encode_animated_webp,
    encode_gif,
    encode_npy,
    encode_png,
    encode_webp,
    encode_zip,
    grid,
    strip,
    to_model_input,
    to_uint8,
)

LIMITS = DecodeLimits(max_bytes=1_000_000, max_pixels=1_000_000)


def _noise(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _save(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with no pixel data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _frame_count(im: Image.Image) -> int:
    return sum(1 for _ in ImageSequence.Iterator(im))


# --- tensors <-> pixels


def test_to_uint8_scales_clips_and_reorders() -> None:
    x = np.array([-1.0, -0.5, 0.0, 1.0, 3.0, -7.0, np.nan], np.float32).reshape(1, 1, 1, 7)
    out = to_uint8(x, (-1.0, 1.0))
    assert out.dtype == np.uint8 and out.shape == (1, 1, 7, 1)
    # -0.5 -> 63.75 -> 64; 0 -> 127.5 -> 128 (half to even); out of range clipped; NaN -> 0.
    np.testing.assert_array_equal(out.ravel(), [0, 64, 128, 255, 255, 0, 0])


def test_to_uint8_maps_infinities_to_the_ends_and_leaves_its_input_alone() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.25], np.float32).reshape(1, 1, 1, 4)
    before = x.copy()
    assert to_uint8(x, (0.0, 1.0)).ravel().tolist() == [0, 255, 0, 64]
    np.testing.assert_array_equal(x, before)


def test_to_uint8_moves_channels_last() -> None:
    x = np.zeros((2, 3, 4, 5), np.float32)
    x[:, 1] = 1.0  # green channel full
    out = to_uint8(x, (0.0, 1.0))
    assert out.shape == (2, 4, 5, 3)
    assert (out[..., 1] == 255).all() and (out[..., 0] == 0).all() and (out[..., 2] == 0).all()


def test_pixels_round_trip_through_model_input() -> None:
    pixels = np.stack([_noise(6, 5, 3, 1), _noise(6, 5, 3, 2)])
    x = to_model_input(pixels, (-1.0, 1.0))
    assert x.dtype == np.float32 and x.shape == (2, 3, 6, 5)
    assert x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_array_equal(to_uint8(x, (-1.0, 1.0)), pixels)


def test_tensor_conversions_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="lo < hi"):
        to_uint8(np.zeros((1, 1, 2, 2), np.float32), (1.0, 1.0))
    with pytest.raises(ValueError, match="C in"):
        to_uint8(np.zeros((1, 2, 2, 2), np.float32), (0.0, 1.0))
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(np.zeros((1, 2, 2, 1), np.float32), (0.0, 1.0))


# --- grids and encoders


def test_grid_shape_and_placement() -> None:
    images = np.stack([np.full((4, 3, 1), i + 1, np.uint8) for i in range(5)])
    g = grid(images, pad=2, pad_value=200)
    # 5 images -> 3 columns, 2 rows.
    assert g.shape == (2 * (4 + 2) + 2, 3 * (3 + 2) + 2, 1)
    assert g[0, 0, 0] == 200
    assert (g[2:6, 2:5] == 1).all()
    assert (g[8:12, 7:10] == 5).all()  # row 1, column 1
    assert (g[8:12, 12:15] == 200).all()  # the empty sixth cell is padding


def test_grid_with_explicit_columns_and_no_padding() -> None:
    images = np.stack([_noise(2, 2, 3, i) for i in range(4)])
    g = grid(images, cols=4, pad=0)
    assert g.shape == (2, 8, 3)
    np.testing.assert_array_equal(g[:, 6:8], images[3])
    assert grid(images, cols=10, pad=0).shape == (2, 8, 3)  # capped at N columns


def test_strip_is_one_row() -> None:
    frames = np.stack([_noise(5, 7, 1, i) for i in range(6)])
    assert strip(frames).shape == (5 + 4, 6 * 9 + 2, 1)


def test_grid_refuses_empty_batches_and_bad_columns() -> None:
    with pytest.raises(ValueError, match="at least one"):
        grid(np.zeros((0, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="cols"):
        grid(np.zeros((2, 2, 2, 3), np.uint8), cols=0)


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "RGB")])
def test_png_round_trips_exactly(channels: int, mode: str) -> None:
    img = _noise(9, 11, channels)
    decoded = Image.open(io.BytesIO(encode_png(img)))
    assert decoded.format == "PNG" and decoded.mode == mode and decoded.size == (11, 9)
    np.testing.assert_array_equal(np.asarray(decoded).reshape(img.shape), img)


@pytest.mark.parametrize("channels", [1, 3])
def test_webp_is_lossless(channels: int) -> None:
    img = _noise(9, 11, channels)
    decoded = Image.open(io.BytesIO(encode_webp(img)))
    assert decoded.format == "WEBP" and decoded.size == (11, 9)
    rgb = np.asarray(decoded.convert("RGB"))
    np.testing.assert_array_equal(rgb, np.broadcast_to(img, (9, 11, 3)))


def test_encoders_refuse_float_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2, 3), np.float32))


@pytest.mark.parametrize("channels", [1, 3])
def test_gif_holds_every_frame(channels: int) -> None:
    frames = np.stack([np.full((8, 8, channels), 40 * i, np.uint8) for i in range(4)])
    im = Image.open(io.BytesIO(encode_gif(frames, duration_ms=70, loop=0)))
    assert im.format == "GIF" and _frame_count(im) == 4 and im.size == (8, 8)
    assert im.info["duration"] == 70 and im.info["loop"] == 0
    im.seek(3)
    assert im.convert("L").getpixel((0, 0)) == 120


@pytest.mark.parametrize("channels", [1, 3])
def test_animated_webp_holds_every_frame_losslessly(channels: int) -> None:
    frames = np.stack([_noise(8, 6, channels, i) for i in range(3)])
    im = Image.open(io.BytesIO(encode_animated_webp(frames, duration_ms=50)))
    assert im.format == "WEBP" and _frame_count(im) == 3 and im.size == (6, 8)
    im.seek(2)
    rgb = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(rgb, np.broadcast_to(frames[2], (8, 6, 3)))


# --- npy


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1),
        np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
        np.asfortranarray(np.arange(6, dtype=">i4").reshape(2, 3)),
        np.zeros((0, 5), np.float64),
    ],
)
def test_npy_round_trips(arr: np.ndarray) -> None:
    out = decode_npy(encode_npy(arr), max_bytes=10_000)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    if arr.flags.c_contiguous:  # the cached header: exactly what np.save writes
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        assert encode_npy(arr) == buf.getvalue()


def test_npy_of_objects_is_refused() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidImage, match="Python objects"):
        decode_npy(buf.getvalue(), max_bytes=10_000)
    with pytest.raises(ValueError):
        encode_npy(np.array([None], dtype=object))


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps(np.zeros(3)),
        b"",
        b"not an array at all",
        b"\x93NUMPY\x01\x00\x10\x00{garbage}       \n",
    ],
)
def test_npy_refuses_what_is_not_npy(data: bytes) -> None:
    with pytest.raises(InvalidImage, match="not a valid .npy"):
        decode_npy(data, max_bytes=10_000)


def test_npz_is_refused() -> None:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros(3))
    with pytest.raises(InvalidImage):
        decode_npy(buf.getvalue(), max_bytes=10_000)


def test_truncated_npy_is_refused() -> None:
    data = encode_npy(np.zeros((4, 4), np.float32))
    with pytest.raises(InvalidImage, match="bytes follow"):
        decode_npy(data[:-1], max_bytes=10_000)


def test_npy_header_claiming_a_huge_array_is_refused_without_allocating_it() -> None:
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    data = buf.getvalue() + b"\x00" * 8
    with pytest.raises(InvalidImage, match="8000000000000 bytes"):
        decode_npy(data, max_bytes=10_000)


def test_oversized_npy_is_refused() -> None:
    data = encode_npy(np.zeros(1000, np.uint8))
    with pytest.raises(LimitExceeded, match="limit is 500"):
        decode_npy(data, max_bytes=500)


# --- zip


def test_zip_holds_pngs_and_a_manifest() -> None:
    images = np.stack([_noise(4, 4, 3, i) for i in range(2)])
    data = encode_zip(images, ["seed-1.png", "seed-2.png"], {"seeds": [1, 2]})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["seed-1.png", "seed-2.png", "manifest.json"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
        assert json.loads(zf.read("manifest.json")) == {"seeds": [1, 2]}
        png = np.asarray(Image.open(io.BytesIO(zf.read("seed-2.png"))))
    np.testing.assert_array_equal(png, images[1])
    assert encode_zip(images, ["seed-1.png", "seed-2.png"], {"seeds": [1, 2]}) == data


@pytest.mark.parametrize("names", [["a.png"], ["a.png", "a.png"], ["a.png", "manifest.json"]])
def test_zip_refuses_bad_names(names: list[str]) -> None:
    with pytest.raises(ValueError):
        encode_zip(np.zeros((2, 2, 2, 1), np.uint8), names, {})


# --- decoding uploads


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("WEBP", {"lossless": True})])
def test_lossless_uploads_decode_exactly(fmt: str, params: dict[str, object]) -> None:
    img = _noise(12, 10, 3)
    out = decode_image(_save(Image.fromarray(img), fmt, **params), limits=LIMITS, channels=3)
    assert out.dtype == np.uint8 and out.shape == (12, 10, 3)
    np.testing.assert_array_equal(out, img)


def test_jpeg_upload_decodes() -> None:
    img = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    out = decode_image(_save(Image.fromarray(img), "JPEG", quality=95), limits=LIMITS, channels=3)
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - img).max() <= 4


def test_rgb_becomes_grayscale_and_grayscale_becomes_rgb() -> None:
    rgb = np.full((4, 4, 3), (255, 0, 0), np.uint8)
    gray = decode_image(encode_png(rgb), limits=LIMITS, channels=1)
    assert gray.shape == (4, 4, 1)
    assert gray[0, 0, 0] == 76  # ITU-R 601-2 luma of pure red
    g = np.full((4, 4, 1), 90, np.uint8)
    out = decode_image(encode_png(g), limits=LIMITS, channels=3)
    assert out.shape == (4, 4, 3) and (out == 90).all()


def test_alpha_is_composited_onto_black() -> None:
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [200, 100, 50, 128]]], np.uint8)
    out = decode_image(_save(Image.fromarray(rgba), "PNG"), limits=LIMITS, channels=3)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 1].tolist() == [255, 0, 0]
    assert np.abs(out[0, 2].astype(int) - [100, 50, 25]).max() <= 1


def test_palette_transparency_is_composited_onto_black() -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([255, 255, 255, 10, 20, 30] + [0] * 762)
    im.putpixel((1, 0), 1)
    data = _save(im, "PNG", transparency=0)  # palette entry 0 (white) is transparent
    out = decode_image(data, limits=LIMITS, channels=3)
    assert out[0].tolist() == [[0, 0, 0], [10, 20, 30]]


def test_sixteen_bit_grayscale_keeps_its_high_byte() -> None:
    values = np.array([[0, 256, 32768, 65535]], np.uint16)
    out = decode_image(_save(Image.fromarray(values), "PNG"), limits=LIMITS, channels=1)
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _save(Image.new("RGB", (8, 4)), "JPEG", exif=exif)
    assert decode_image(data, limits=LIMITS, channels=3).shape == (8, 4, 3)


def test_wrong_size_is_refused_unless_resize_is_asked() -> None:
    data = encode_png(_noise(20, 30, 3))
    with pytest.raises(InvalidImage, match="image is 30x20, the model takes 28x28; pass resize"):
        decode_image(data, limits=LIMITS, channels=1, size=(28, 28))
    out = decode_image(data, limits=LIMITS, channels=1, size=(28, 14), resize=True)
    assert out.shape == (28, 14, 1)


def test_right_size_is_kept_as_is() -> None:
    img = _noise(28, 28, 1)
    out = decode_image(encode_png(img), limits=LIMITS, channels=1, size=(28, 28))
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(
    "data",
    [
        _save(Image.new("RGB", (4, 4)), "GIF"),
        _save(Image.new("RGB", (4, 4)), "BMP"),
        b"hello, this is plain text\n",
        b"%PDF-1.7\n",
    ],
)
def test_other_formats_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType, match="PNG, JPEG or WebP"):
        decode_image(data, limits=LIMITS, channels=3)


def test_empty_upload_is_invalid() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        decode_image(b"", limits=LIMITS, channels=3)


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "PNG"), ("JPEG", "JPEG"), ("WEBP", "WebP")])
def test_truncated_files_are_invalid(fmt: str, name: str) -> None:
    data = _save(Image.fromarray(_noise(64, 64, 3)), fmt)
    with pytest.raises(InvalidImage, match=f"the {name} file is corrupt or truncated"):
        decode_image(data[: len(data) // 2], limits=LIMITS, channels=3)


@pytest.mark.parametrize(("fmt", "keep"), [("PNG", 12), ("JPEG", 20), ("JPEG", 40)])
def test_files_cut_inside_the_header_are_invalid(fmt: str, keep: int) -> None:
    data = _save(Image.fromarray(_noise(64, 64, 3)), fmt)
    with pytest.raises(InvalidImage, match=f"the {fmt} file is corrupt or truncated"):
        decode_image(data[:keep], limits=LIMITS, channels=3)


def test_corrupt_png_data_is_invalid() -> None:
    data = bytearray(encode_png(_noise(32, 32, 3)))
    data[60:80] = b"\x00" * 20  # inside the IDAT stream
    with pytest.raises(InvalidImage):
        decode_image(bytes(data), limits=LIMITS, channels=3)


def test_too_many_bytes_is_refused_before_opening() -> None:
    with pytest.raises(LimitExceeded, match="limit is 100"):
        decode_image(b"x" * 101, limits=DecodeLimits(max_bytes=100, max_pixels=10), channels=3)


def test_too_many_pixels_is_refused() -> None:
    limits = DecodeLimits(max_bytes=1_000_000, max_pixels=63 * 64)
    with pytest.raises(LimitExceeded, match="64x64 = 4096 pixels; the limit is 4032"):
        decode_image(encode_png(_noise(64, 64, 3)), limits=limits, channels=3)


def test_pixel_limit_is_checked_before_decoding() -> None:
    # The header claims 50000 x 1000 pixels, and no pixel data follows.
    with pytest.raises(LimitExceeded, match="50000x1000"):
        decode_image(_png_header_only(50_000, 1_000), limits=LIMITS, channels=3)


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_decompression_bombs_are_refused(side: int) -> None:
    # Above Pillow's limit (warning) and twice it (error), with our own limit out of the way.
    limits = DecodeLimits(max_bytes=1_000_000, max_pixels=10**12)
    with pytest.raises(LimitExceeded, match="decompression-bomb"):
        decode_image(_png_header_only(side, side), limits=limits, channels=3)
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # the global is untouched


def test_base64_and_data_urls_decode() -> None:
    img = _noise(5, 6, 3)
    b64 = base64.b64encode(encode_png(img)).decode()
    for text in (b64, "data:image/png;base64," + b64, b64[:40] + "\n" + b64[40:], b64.rstrip("=")):
        np.testing.assert_array_equal(decode_base64_image(text, limits=LIMITS, channels=3), img)


@pytest.mark.parametrize("text", ["not base64 at all!", "data:image/png,rawbytes", "ñññ="])
def test_bad_base64_is_invalid(text: str) -> None:
    with pytest.raises(InvalidImage):
        decode_base64_image(text, limits=LIMITS, channels=3)


def test_base64_size_is_checked_before_decoding() -> None:
    limits = DecodeLimits(max_bytes=30, max_pixels=100)
    with pytest.raises(LimitExceeded, match="about 48 bytes"):
        decode_base64_image("!" * 64, limits=limits, channels=3)
