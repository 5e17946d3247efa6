"""app.oip through KServe's own v2 client (``kserve.InferenceRESTClient``), unmodified.

The client lives in a venv of its own (``make kserve-client``; its pins conflict with ours), so
it runs there, in tests/app/oip/kserve_calls.py, against a real server; what it answered is
compared here with ONNX Runtime (generator, discriminator) and /v1/sample's npy (seeded).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort

from tests.app.helpers import npy
from tests.conftest import ROOT, Server

PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
CALLS = Path(__file__).with_name("kserve_calls.py")


def _text(array: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, array)
    return base64.b64encode(buf.getvalue()).decode()


def _array(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text)))


def _kserve(spec: dict[str, Any]) -> dict[str, Any]:
    assert PYTHON.exists(), f"{PYTHON} is missing: `make kserve-client` makes it"
    done = subprocess.run(
        [str(PYTHON), str(CALLS)], input=json.dumps(spec), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def _onnx(repo: Path, name: str, role: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(repo / name / "1" / f"{role}.onnx")).run(None, feeds)[0]


def test_kserve_client_checks_health_and_infers_all_three_kinds(
    server: Server, template_repo: Path
) -> None:
    z = np.random.default_rng(3).standard_normal((3, 8), dtype=np.float32)
    labels = np.array([2, 0, 9], dtype=np.int64)
    images = np.random.default_rng(4).uniform(-1, 1, (3, 1, 28, 28)).astype(np.float32)
    seeds = np.array([5, 6, 2**40], dtype=np.int64)
    calls = []
    for binary in (True, False):
        calls += [
            {"model": "tiny-cgan", "inputs": {"z": z, "label": labels}},
            {"model": "tiny-gan.discriminator", "inputs": {"image": images}},
            {"model": "tiny-cgan.seeded", "inputs": {"seed": seeds}},
        ]
        for call in calls[-3:]:
            call["binary"] = binary
    spec = {
        "url": server.url,
        "models": ["tiny-gan", "tiny-cgan.discriminator", "tiny-gan.seeded", "tiny-gan.nope"],
        "calls": [
            {**c, "id": f"call-{i}", "inputs": {k: _text(v) for k, v in c["inputs"].items()}}
            for i, c in enumerate(calls)
        ],
    }
    answer = _kserve(spec)
    assert answer["live"] is True and answer["ready"] is True
    assert answer["models"] == {
        "tiny-gan": True,
        "tiny-cgan.discriminator": True,
        "tiny-gan.seeded": True,
        "tiny-gan.nope": False,
    }
    generated = _onnx(template_repo, "tiny-cgan", "generator", {"z": z, "label": labels})
    logits = _onnx(template_repo, "tiny-gan", "discriminator", {"image": images})
    body = {"model": "tiny-cgan", "seeds": seeds.tolist(), "format": "npy"}
    sampled = npy(httpx.post(f"{server.url}/v1/sample", json=body))
    expected = [generated, logits, sampled] * 2
    for i, (result, want) in enumerate(zip(answer["results"], expected, strict=True)):
        assert result["id"] == f"call-{i}" and result["model"] == calls[i]["model"]
        (got,) = [_array(t) for t in result["outputs"].values()]
        assert got.dtype == want.dtype, (i, got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want.reshape(got.shape))
