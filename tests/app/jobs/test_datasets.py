"""app.jobs.datasets: dataset uploads, good and hostile."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import app_settings
from tests.core.test_npy import forged


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _png(value: int) -> bytes:
    from core.imaging import encode_png

    return encode_png(np.full((28, 28, 1), value, np.uint8))


def test_dataset_uploads(models_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = app_settings(models_dir, data_dir=tmp_path / "data", max_dataset_bytes=200_000)
    good = _zip(
        {f"{c}/{i}.png": _png(k * 50 + i) for k, c in enumerate(["cat", "dog"]) for i in range(3)}
    )
    arr = io.BytesIO()
    np.savez(arr, images=np.zeros((4, 28, 28), np.uint8), labels=np.array([0, 1, 0, 1]))
    bomb = _zip({"a/x.png": b"\0" * 150_000})
    cases = {
        "../": (_zip({"../evil/x.png": _png(1)}), 422),
        "absolute": (_zip({"/abs/x.png": _png(1)}), 422),
        "symlink": (_zip({"a/x.png": _png(1)}, symlink="a/link.png"), 422),
        "bomb": (bomb, 413),
        "empty": (_zip({}), 422),
        "not an image": (_zip({"a/x.png": b"hello"}), 422),
        "text": (b"just text", 422),
        "too large": (b"\0" * 300_000, 413),
    }
    with TestClient(create_app(settings)) as c:
        made = c.post("/v1/datasets", files={"file": ("pets.zip", good)}, data={"name": "pets"})
        assert made.status_code == 201, made.text
        meta = made.json()
        assert meta["size"] == 6 and meta["class_names"] == ["cat", "dog"]
        assert meta["image_shape"] == [1, 28, 28]
        npz = c.post("/v1/datasets", files={"file": ("d.npz", arr.getvalue())})
        assert npz.status_code == 201, npz.text
        for label, (data, status) in cases.items():
            r = c.post("/v1/datasets", files={"file": ("x.zip", data)})
            assert r.status_code == status, (label, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        listed = c.get("/v1/datasets").json()
        assert {d["id"] for d in listed} == {meta["id"], npz.json()["id"]}
        assert not (tmp_path / "evil").exists()
        job = c.post("/v1/jobs", json={"model": "pets", "dataset": meta["id"]})
        assert job.status_code == 202, job.text


def _npz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


LABELS = _npy(np.array([0, 1, 0, 1]))


def _images(descr: str, shape: tuple[int, ...], data: bytes = b"\x00" * 64) -> bytes:
    return forged({"descr": descr, "fortran_order": False, "shape": shape}, data)


HOSTILE_NPZ = {
    # A 100-byte member that declares 784 GB of images: numpy allocated first, then read.
    "terabyte": (_images("|u1", (10**9, 28, 28)), 422, "declares"),
    "overflow": (_images("|u1", (0, 10**30)), 422, "absurd"),
    "objects": (_images("|O", (4, 28, 28)), 422, "Python objects"),
    "strings": (_images("<U9", (4, 28, 28)), 422, "plain numbers"),
    # Honest headers, zeros that deflate 1000:1: 4 MB of pixels from a few kB of upload.
    "amplified": (_npy(np.zeros((4, 1024, 1024), np.uint8)), 413, "pixel values"),
}


@pytest.mark.parametrize(("images", "status", "words"), HOSTILE_NPZ.values(), ids=HOSTILE_NPZ)
def test_npz_uploads_are_checked_on_their_headers(
    models_dir: Path, tmp_path: Path, images: bytes, status: int, words: str
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = app_settings(
        models_dir,
        data_dir=tmp_path / "data",
        max_dataset_pixels=1_000_000,
        max_dataset_bytes=2_000_000,  # unpacked: 8 MB, so the pixel bound is what refuses
    )
    upload = _npz({"images.npy": images, "labels.npy": LABELS})
    assert len(upload) < 20_000
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/datasets", files={"file": ("d.npz", upload)})
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert words in r.json()["detail"] and "/" not in r.json()["detail"]
        assert c.get("/v1/datasets").json() == []
        assert c.get("/healthz").json() == {"status": "ok"}


def test_a_zip_of_small_compressed_images_is_bounded_by_decoded_pixels(
    models_dir: Path, tmp_path: Path
) -> None:
    """Each PNG is 256x256 of one colour: a few hundred bytes that decode to 64 kB."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from core.imaging import encode_png

    flat = encode_png(np.zeros((256, 256, 1), np.uint8))
    assert len(flat) < 1000
    many = _zip({f"{c}/{i}.png": flat for c in ("a", "b") for i in range(40)})  # 5.2 MB decoded
    settings = app_settings(models_dir, data_dir=tmp_path / "data", max_dataset_pixels=2**20)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/datasets", files={"file": ("many.zip", many)})
        assert r.status_code == 413, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "1048576 pixel values" in r.json()["detail"]
        assert not list((tmp_path / "data" / "datasets").iterdir())  # no leftovers
        few = _zip({f"{c}/{i}.png": flat for c in ("a", "b") for i in range(4)})  # 512 kB
        assert c.post("/v1/datasets", files={"file": ("few.zip", few)}).status_code == 201
        assert c.get("/healthz").json() == {"status": "ok"}
