"""Runtimes: ONNX Runtime without torch, TorchScript with it, same numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.main import create_app
from app.serving.engine import BySize, OnnxEngine, TorchScriptEngine, available_cpus, load_engine
from app.settings import Settings
from core.repository import Repository
from tests.conftest import app_settings

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_pure_core_imports_neither_fastapi_nor_torch() -> None:
    _run(
        """
        import sys
        import core.latent, core.imaging, core.repository
        assert "torch" not in sys.modules and "fastapi" not in sys.modules, sorted(sys.modules)
        """
    )


def test_serving_through_onnx_never_imports_torch(models_dir: Path) -> None:
    _run(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from app.main import create_app
        from app.settings import Settings
        assert "torch" not in sys.modules
        app = create_app(Settings(
            models_dir={str(models_dir)!r},
            data_dir={str(models_dir.parent / "data")!r},
            registry_poll_seconds=0,
        ))
        with TestClient(app) as client:
            bodies = ({{"model": "tiny-gan", "n": 3}}, {{"model": "tiny-cgan", "format": "npy"}})
            for body in bodies:
                assert client.post("/v1/sample", json=body).status_code == 200
            r = client.post("/v1/interpolate", json={{"model": "tiny-gan", "from": {{"seed": 1}},
                                                    "to": {{"seed": 2}}}})
            assert r.status_code == 200
        assert "torch" not in sys.modules, "torch was imported on the ONNX path"
        """
    )


def test_torchscript_and_onnx_engines_agree(models_dir: Path) -> None:
    repo = Repository(models_dir)
    m = repo.verify("tiny-cgan", 1)
    folder = repo.version_dir("tiny-cgan", 1)
    onnx = load_engine(folder, m, "generator", Settings(backend="onnx"))
    ts = load_engine(folder, m, "generator", Settings(backend="torchscript"))
    assert isinstance(onnx, OnnxEngine | BySize) and isinstance(ts, TorchScriptEngine)
    feeds = {
        "z": np.random.default_rng(0).standard_normal((5, 8), np.float32),
        "label": np.arange(5, dtype=np.int64),
    }
    np.testing.assert_allclose(onnx.run(feeds), ts.run(feeds), atol=1e-5)
    assert onnx.device == ts.device == "cpu"


def test_the_service_serves_through_torchscript(models_dir: Path) -> None:
    body = {"model": "tiny-gan", "seed": 3, "n": 4, "format": "npy"}
    results = []
    for backend in ("onnx", "torchscript"):
        settings = app_settings(models_dir, backend=backend)
        with TestClient(create_app(settings)) as client:
            r = client.post("/v1/sample", json=body)
            assert r.status_code == 200
            results.append(np.load(__import__("io").BytesIO(r.content)))
    # uint8 after rounding: float differences of 1e-6 may flip a pixel by one level.
    assert np.abs(results[0].astype(int) - results[1].astype(int)).max() <= 1


class _Recording:
    """An Engine (the protocol) that records the rows it was given and echoes z."""

    def __init__(self) -> None:
        self.device, self.input_names, self.rows = "cpu", ["z"], []  # type: list[int]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.rows.append(len(inputs["z"]))
        return inputs["z"]


def test_big_batches_go_to_the_session_with_every_core() -> None:
    small, big = _Recording(), _Recording()
    engine = BySize(small, big, big_from=256)
    for rows in (1, 255, 256, 1024):
        engine.run({"z": np.zeros((rows, 4), np.float32)})
    assert small.rows == [1, 255] and big.rows == [256, 1024]


def test_the_server_loads_a_big_batch_session_only_when_it_has_more_threads(
    models_dir: Path,
) -> None:
    repo = Repository(models_dir)
    folder, manifest = repo.version_dir("tiny-cgan", 1), repo.verify("tiny-cgan", 1)
    one = load_engine(
        folder,
        manifest,
        "generator",
        Settings(device="cpu", big_batch_threads=1, intra_op_threads=1),
    )
    assert isinstance(one, OnnxEngine)
    two = load_engine(
        folder,
        manifest,
        "generator",
        Settings(device="cpu", big_batch_threads=2, intra_op_threads=1),
    )
    assert isinstance(two, BySize)
    z = np.random.default_rng(0).standard_normal((300, 8), dtype=np.float32)
    feeds = {"z": z, "label": np.arange(300) % 3}
    np.testing.assert_allclose(two.run(feeds), one.run(feeds), atol=1e-5)  # the same graph
    np.testing.assert_allclose(
        two.run({k: v[:5] for k, v in feeds.items()}),
        one.run({k: v[:5] for k, v in feeds.items()}),
        atol=1e-5,
    )


def test_available_cpus_is_the_affinity_mask_at_most() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
