from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.datasets import Dataset, DatasetError, DatasetTooLarge, load_dataset
from tests.core.test_npy import forged


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("builtin:mnist")


def _digits(n: int = 12, classes: int = 3, side: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % classes
    return images, labels


# --- built-in MNIST -------------------------------------------------------------------------


def test_builtin_mnist_is_5000_labelled_28x28_digits(mnist: Dataset) -> None:
    assert mnist.name == "builtin:mnist"
    assert mnist.images.shape == (5000, 1, 28, 28)
    assert mnist.images.dtype == np.uint8
    assert mnist.labels.shape == (5000,)
    assert mnist.labels.dtype == np.int64
    assert mnist.num_classes == 10
    assert mnist.class_names == [str(i) for i in range(10)]
    assert mnist.image_shape == (1, 28, 28)
    assert set(np.unique(mnist.labels)) == set(range(10))
    assert len(mnist.sha256()) == 64


def test_unknown_builtin_is_refused() -> None:
    with pytest.raises(DatasetError, match="unknown built-in dataset 'cifar'"):
        load_dataset("builtin:cifar")


# --- split ----------------------------------------------------------------------------------


def test_split_is_disjoint_covering_and_stratified(mnist: Dataset) -> None:
    train, held = mnist.split(0.1, seed=0)
    assert len(train.labels) + len(held.labels) == len(mnist.labels)
    assert train.class_names == held.class_names == mnist.class_names

    # Disjoint and covering: every image lands in exactly one part. Images are compared by
    # their bytes, pairing each with its label, so duplicates in the data cannot hide a loss.
    def rows(ds: Dataset) -> list[bytes]:
        return sorted(
            im.tobytes() + bytes([lbl]) for im, lbl in zip(ds.images, ds.labels, strict=True)
        )

    assert sorted(rows(train) + rows(held)) == rows(mnist)
    counts = np.bincount(mnist.labels, minlength=10)
    held_counts = np.bincount(held.labels, minlength=10)
    np.testing.assert_array_equal(held_counts, np.round(counts * 0.1))
    assert "held-out" in held.name and "train" in train.name


def test_split_is_deterministic_for_a_seed_and_varies_with_it(mnist: Dataset) -> None:
    _, a = mnist.split(0.1, seed=0)
    _, b = mnist.split(0.1, seed=0)
    _, c = mnist.split(0.1, seed=1)
    assert a.sha256() == b.sha256()
    np.testing.assert_array_equal(a.images, b.images)
    assert a.sha256() != c.sha256()
    # Another seed still gives a stratified split of the same size per class.
    np.testing.assert_array_equal(np.bincount(a.labels), np.bincount(c.labels))


def test_split_too_small_to_hold_anything_out_is_an_error() -> None:
    images, _ = _digits(n=3)
    ds = Dataset("three", images[:, None], np.arange(3, dtype=np.int64), ["a", "b", "c"])
    with pytest.raises(DatasetError, match="too few images"):
        ds.split(0.1, seed=0)


# --- npz ------------------------------------------------------------------------------------


def test_npz_loads_and_adds_a_channel_axis(tmp_path: Path) -> None:
    images, labels = _digits()
    path = tmp_path / "digits.npz"
    np.savez(path, images=images, labels=labels.astype(np.uint8))
    ds = load_dataset(str(path))
    assert ds.images.shape == (12, 1, 6, 6)
    assert ds.labels.dtype == np.int64
    assert ds.class_names == ["0", "1", "2"]
    np.testing.assert_array_equal(ds.images[:, 0], images)
    np.testing.assert_array_equal(ds.labels, labels)


def test_npz_with_nhwc_rgb_images_is_transposed_to_nchw(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (4, 8, 6, 3), dtype=np.uint8)
    path = tmp_path / "rgb.npz"
    np.savez(path, images=rgb, labels=np.array([0, 1, 0, 1]))
    ds = load_dataset(str(path))
    assert ds.image_shape == (3, 8, 6)
    np.testing.assert_array_equal(ds.images, rgb.transpose(0, 3, 1, 2))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": _digits()[0]}, "needs arrays 'images' and 'labels'"),
        ({"x": _digits()[0], "labels": _digits()[1]}, "needs arrays 'images' and 'labels'"),
        (
            {"images": _digits()[0].astype(np.float32) / 255, "labels": _digits()[1]},
            "images must be uint8, got float32",
        ),
        (
            {"images": np.zeros((0, 6, 6), np.uint8), "labels": np.zeros(0, np.int64)},
            "non-empty",
        ),
        (
            {"images": np.zeros((0, 6, 6), np.uint8), "labels": np.zeros(1, np.int64)},
            "empty",
        ),
        (
            {"images": _digits()[0], "labels": _digits()[1] - 1},
            r"labels must lie in 0\.\.",
        ),
        (
            {"images": _digits()[0], "labels": _digits()[1].astype(np.float32)},
            "labels must be integers",
        ),
        (
            {"images": _digits()[0], "labels": _digits()[1][:5]},
            "labels must be integers, one per image",
        ),
        (
            {"images": np.zeros((2, 2, 2), np.uint8), "labels": np.zeros(2, np.int64)},
            r"image size 2x2 is outside",
        ),
        (
            {"images": np.zeros((2, 6, 6, 5), np.uint8), "labels": np.zeros(2, np.int64)},
            "C in \\(1, 3\\)",
        ),
    ],
    ids=[
        "no-labels",
        "no-images",
        "float-images",
        "empty",
        "no-images-for-labels",
        "negative-label",
        "float-labels",
        "label-count",
        "too-small",
        "five-channels",
    ],
)
def test_bad_npz_is_a_dataset_error_with_a_clear_message(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(path))


def test_garbage_npz_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip archive\x00\x01\x02" * 10)
    with pytest.raises(DatasetError, match="not a readable npz file"):
        load_dataset(str(path))


def test_npy_file_named_npz_is_a_dataset_error(tmp_path: Path) -> None:
    # np.load() returns a bare array for .npy content, whatever the file's name.
    path = tmp_path / "renamed.npz"
    with open(path, "wb") as f:
        np.save(f, _digits()[0])
    with pytest.raises(DatasetError, match="npz"):
        load_dataset(str(path))


# --- image folders --------------------------------------------------------------------------


def _write_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (6, 5)) -> None:
    rng = np.random.default_rng(2)
    for cls, count in classes.items():
        (root / cls).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")


def test_npz_members_are_weighed_on_their_headers_before_reading(tmp_path: Path) -> None:
    images, labels = _digits(n=12, side=6)  # 432 pixel values
    path = tmp_path / "d.npz"
    np.savez(path, images=images, labels=labels)
    assert len(load_dataset(str(path), max_pixels=432).labels) == 12
    with pytest.raises(DatasetTooLarge, match="432 pixel values; the limit is 431"):
        load_dataset(str(path), max_pixels=431)


def test_an_npz_member_declaring_more_than_it_holds_is_refused_unallocated(
    tmp_path: Path,
) -> None:
    import zipfile

    header = {"descr": "|u1", "fortran_order": False, "shape": (10**9, 28, 28)}  # 784 GB
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images.npy", forged(header, b"\x00" * 100))
        zf.writestr("labels.npy", forged({**header, "shape": (2,)}, b"\x00" * 2))
    with pytest.raises(DatasetError, match="declares .* but holds"):
        load_dataset(str(path))


def test_image_folder_is_bounded_by_its_total_decoded_pixels(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / "a").mkdir(exist_ok=True)
        Image.new("RGB", (10, 10)).save(tmp_path / "a" / f"{i}.png")  # 300 values each
    assert len(load_dataset(str(tmp_path), max_pixels=900).labels) == 3
    with pytest.raises(DatasetTooLarge, match="over 899 pixel values"):
        load_dataset(str(tmp_path), max_pixels=899)


def test_image_folder_gives_one_class_per_sub_folder(tmp_path: Path) -> None:
    _write_folder(tmp_path / "shapes", {"circle": 2, "square": 3})
    (tmp_path / "shapes" / "square" / "notes.txt").write_text("ignored: not an image")
    (tmp_path / "shapes" / ".hidden").mkdir()
    ds = load_dataset(str(tmp_path / "shapes"))
    assert ds.name == "shapes"
    assert ds.class_names == ["circle", "square"]
    assert ds.images.shape == (5, 1, 5, 6)  # grayscale PNGs of width 6, height 5
    assert ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [0, 0, 1, 1, 1]
    with Image.open(tmp_path / "shapes" / "square" / "0.png") as im:
        np.testing.assert_array_equal(ds.images[2, 0], np.asarray(im))


def test_image_folder_rgb_images_keep_three_channels(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        (tmp_path / "rgb" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "rgb" / cls / "x.png")
    ds = load_dataset(str(tmp_path / "rgb"))
    assert ds.image_shape == (3, 8, 8)
    assert ds.images[0, :, 0, 0].tolist() == [255, 0, 0]


def test_image_folder_with_mismatched_sizes_is_refused(tmp_path: Path) -> None:
    _write_folder(tmp_path / "mixed", {"a": 2}, size=(6, 6))
    (tmp_path / "mixed" / "b").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "mixed" / "b" / "big.png")
    with pytest.raises(DatasetError, match="images differ in size or channels"):
        load_dataset(str(tmp_path / "mixed"))


def test_image_folder_with_unreadable_image_names_the_file(tmp_path: Path) -> None:
    _write_folder(tmp_path / "broken", {"a": 2, "b": 1})
    bad = tmp_path / "broken" / "b" / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="bad.png: not a readable image"):
        load_dataset(str(tmp_path / "broken"))


def test_image_folder_without_sub_folders_is_refused(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (6, 6)).save(flat / "0.png")
    with pytest.raises(DatasetError, match="one sub-folder per class"):
        load_dataset(str(flat))


def test_image_folder_with_no_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset(str(tmp_path / "empty"))


# --- IDX ------------------------------------------------------------------------------------


def _idx(array: np.ndarray, magic_type: int = 0x08) -> bytes:
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    opener = gzip.open if gz else open
    images_path = folder / f"train-images-idx3-ubyte{suffix}"
    with opener(images_path, "wb") as f:
        f.write(_idx(images))
    with opener(folder / f"train-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(_idx(labels))
    return images_path


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_files_load_with_labels_found_by_name(tmp_path: Path, gz: bool) -> None:
    images, labels = _digits()
    path = _write_idx(tmp_path / "mnist", images, labels, gz=gz)
    ds = load_dataset(str(path))
    assert ds.images.shape == (12, 1, 6, 6)
    np.testing.assert_array_equal(ds.images[:, 0], images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64
    assert ds.class_names == ["0", "1", "2"]


def test_idx_labels_are_found_next_to_images_whatever_the_folder_is_called(
    tmp_path: Path,
) -> None:
    # Only the file name says "images"/"idx3"; a parent folder called e.g. "images" must not
    # send the loader looking for the labels in a sibling "labels" folder.
    images, labels = _digits()
    path = _write_idx(tmp_path / "images", images, labels)
    ds = load_dataset(str(path))
    np.testing.assert_array_equal(ds.labels, labels)


def test_idx_with_bad_magic_is_refused(tmp_path: Path) -> None:
    images, labels = _digits()
    path = _write_idx(tmp_path / "mnist", images, labels)
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # float32 data type: not what the loader reads
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="bad magic number"):
        load_dataset(str(path))


def test_idx_whose_header_disagrees_with_its_data_is_refused(tmp_path: Path) -> None:
    images, labels = _digits()
    path = _write_idx(tmp_path / "mnist", images, labels)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DatasetError, match="IDX header says"):
        load_dataset(str(path))


def test_idx_truncated_inside_its_header_is_a_dataset_error(tmp_path: Path) -> None:
    images, labels = _digits()
    path = _write_idx(tmp_path / "mnist", images, labels)
    path.write_bytes(_idx(images)[:6])  # magic says 3 dims, but only half of one is there
    with pytest.raises(DatasetError):
        load_dataset(str(path))


def test_idx_without_labels_file_is_refused(tmp_path: Path) -> None:
    images, labels = _digits()
    path = _write_idx(tmp_path / "mnist", images, labels)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="no labels file next to it"):
        load_dataset(str(path))


def test_idx_label_count_must_match_image_count(tmp_path: Path) -> None:
    images, labels = _digits()
    path = _write_idx(tmp_path / "mnist", images, labels[:-1])
    with pytest.raises(DatasetError, match="11 labels for 12 images"):
        load_dataset(str(path))


# --- sources --------------------------------------------------------------------------------


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere.npz"))


def test_unrecognised_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "digits.csv"
    path.write_text("0,1,2\n")
    with pytest.raises(DatasetError, match="expected a folder, an .npz or an IDX"):
        load_dataset(str(path))
