from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageSequence

from core.imaging import (
    encode_animated_webp,
    encode_gif,
    encode_png,
    encode_webp,
    encode_zip,
    grid,
    strip,
    to_model_input,
    to_uint8,
)
from tests.images import noise


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
    pixels = np.stack([noise(6, 5, 3, 1), noise(6, 5, 3, 2)])
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
    images = np.stack([noise(2, 2, 3, i) for i in range(4)])
    g = grid(images, cols=4, pad=0)
    assert g.shape == (2, 8, 3)
    np.testing.assert_array_equal(g[:, 6:8], images[3])
    assert grid(images, cols=10, pad=0).shape == (2, 8, 3)  # capped at N columns


def test_strip_is_one_row() -> None:
    frames = np.stack([noise(5, 7, 1, i) for i in range(6)])
    assert strip(frames).shape == (5 + 4, 6 * 9 + 2, 1)


def test_grid_refuses_empty_batches_and_bad_columns() -> None:
    with pytest.raises(ValueError, match="at least one"):
        grid(np.zeros((0, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="cols"):
        grid(np.zeros((2, 2, 2, 3), np.uint8), cols=0)


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "RGB")])
def test_png_round_trips_exactly(channels: int, mode: str) -> None:
    img = noise(9, 11, channels)
    decoded = Image.open(io.BytesIO(encode_png(img)))
    assert decoded.format == "PNG" and decoded.mode == mode and decoded.size == (11, 9)
    np.testing.assert_array_equal(np.asarray(decoded).reshape(img.shape), img)


@pytest.mark.parametrize("channels", [1, 3])
def test_webp_is_lossless(channels: int) -> None:
    img = noise(9, 11, channels)
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
    frames = np.stack([noise(8, 6, channels, i) for i in range(3)])
    im = Image.open(io.BytesIO(encode_animated_webp(frames, duration_ms=50)))
    assert im.format == "WEBP" and _frame_count(im) == 3 and im.size == (6, 8)
    im.seek(2)
    rgb = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(rgb, np.broadcast_to(frames[2], (8, 6, 3)))


# --- npy


# --- zip


def test_zip_holds_pngs_and_a_manifest() -> None:
    images = np.stack([noise(4, 4, 3, i) for i in range(2)])
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
