from __future__ import annotations

import base64
import io
import pickle

import numpy as np
import pytest
from PIL import Image

from core.decoding import DecodeLimits, decode_base64_image, decode_image, decode_npy
from core.errors import InvalidImage, LimitExceeded, UnsupportedMediaType
from core.imaging import (
    encode_npy,
    encode_png,
)
from tests.images import noise, png_header_only, save

LIMITS = DecodeLimits(max_bytes=1_000_000, max_pixels=1_000_000)


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


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("WEBP", {"lossless": True})])
def test_lossless_uploads_decode_exactly(fmt: str, params: dict[str, object]) -> None:
    img = noise(12, 10, 3)
    out = decode_image(save(Image.fromarray(img), fmt, **params), limits=LIMITS, channels=3)
    assert out.dtype == np.uint8 and out.shape == (12, 10, 3)
    np.testing.assert_array_equal(out, img)


def test_jpeg_upload_decodes() -> None:
    img = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    out = decode_image(save(Image.fromarray(img), "JPEG", quality=95), limits=LIMITS, channels=3)
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
    out = decode_image(save(Image.fromarray(rgba), "PNG"), limits=LIMITS, channels=3)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 1].tolist() == [255, 0, 0]
    assert np.abs(out[0, 2].astype(int) - [100, 50, 25]).max() <= 1


def test_palette_transparency_is_composited_onto_black() -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([255, 255, 255, 10, 20, 30] + [0] * 762)
    im.putpixel((1, 0), 1)
    data = save(im, "PNG", transparency=0)  # palette entry 0 (white) is transparent
    out = decode_image(data, limits=LIMITS, channels=3)
    assert out[0].tolist() == [[0, 0, 0], [10, 20, 30]]


def test_sixteen_bit_grayscale_keeps_its_high_byte() -> None:
    values = np.array([[0, 256, 32768, 65535]], np.uint16)
    out = decode_image(save(Image.fromarray(values), "PNG"), limits=LIMITS, channels=1)
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = save(Image.new("RGB", (8, 4)), "JPEG", exif=exif)
    assert decode_image(data, limits=LIMITS, channels=3).shape == (8, 4, 3)


def test_wrong_size_is_refused_unless_resize_is_asked() -> None:
    data = encode_png(noise(20, 30, 3))
    with pytest.raises(InvalidImage, match="image is 30x20, the model takes 28x28; pass resize"):
        decode_image(data, limits=LIMITS, channels=1, size=(28, 28))
    out = decode_image(data, limits=LIMITS, channels=1, size=(28, 14), resize=True)
    assert out.shape == (28, 14, 1)


def test_right_size_is_kept_as_is() -> None:
    img = noise(28, 28, 1)
    out = decode_image(encode_png(img), limits=LIMITS, channels=1, size=(28, 28))
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(
    "data",
    [
        save(Image.new("RGB", (4, 4)), "GIF"),
        save(Image.new("RGB", (4, 4)), "BMP"),
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
    data = save(Image.fromarray(noise(64, 64, 3)), fmt)
    with pytest.raises(InvalidImage, match=f"the {name} file is corrupt or truncated"):
        decode_image(data[: len(data) // 2], limits=LIMITS, channels=3)


@pytest.mark.parametrize(("fmt", "keep"), [("PNG", 12), ("JPEG", 20), ("JPEG", 40)])
def test_files_cut_inside_the_header_are_invalid(fmt: str, keep: int) -> None:
    data = save(Image.fromarray(noise(64, 64, 3)), fmt)
    with pytest.raises(InvalidImage, match=f"the {fmt} file is corrupt or truncated"):
        decode_image(data[:keep], limits=LIMITS, channels=3)


def test_corrupt_png_data_is_invalid() -> None:
    data = bytearray(encode_png(noise(32, 32, 3)))
    data[60:80] = b"\x00" * 20  # inside the IDAT stream
    with pytest.raises(InvalidImage):
        decode_image(bytes(data), limits=LIMITS, channels=3)


def test_too_many_bytes_is_refused_before_opening() -> None:
    with pytest.raises(LimitExceeded, match="limit is 100"):
        decode_image(b"x" * 101, limits=DecodeLimits(max_bytes=100, max_pixels=10), channels=3)


def test_too_many_pixels_is_refused() -> None:
    limits = DecodeLimits(max_bytes=1_000_000, max_pixels=63 * 64)
    with pytest.raises(LimitExceeded, match="64x64 = 4096 pixels; the limit is 4032"):
        decode_image(encode_png(noise(64, 64, 3)), limits=limits, channels=3)


def test_pixel_limit_is_checked_before_decoding() -> None:
    # The header claims 50000 x 1000 pixels, and no pixel data follows.
    with pytest.raises(LimitExceeded, match="50000x1000"):
        decode_image(png_header_only(50_000, 1_000), limits=LIMITS, channels=3)


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_decompression_bombs_are_refused(side: int) -> None:
    # Above Pillow's limit (warning) and twice it (error), with our own limit out of the way.
    limits = DecodeLimits(max_bytes=1_000_000, max_pixels=10**12)
    with pytest.raises(LimitExceeded, match="decompression-bomb"):
        decode_image(png_header_only(side, side), limits=limits, channels=3)
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # the global is untouched


def test_base64_and_data_urls_decode() -> None:
    img = noise(5, 6, 3)
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
