"""app.jobs.datasets: dataset uploads, good and hostile."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from tests.conftest import app_settings


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
