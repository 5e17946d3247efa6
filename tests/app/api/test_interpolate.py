"""app.api.interpolate: POST /v1/interpolate in every format, through the real app."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.app.helpers import npy


def test_interpolate_formats(client: TestClient) -> None:
    body = {"model": "tiny-cgan", "from": {"seed": 1}, "to": {"seed": 2}, "steps": 5, "label": 3}
    frames = npy(client.post("/v1/interpolate", json={**body, "format": "npy"}))
    assert frames.shape == (5, 28, 28, 1)
    ends = npy(
        client.post(
            "/v1/sample", json={"model": "tiny-cgan", "seeds": [1, 2], "labels": 3, "format": "npy"}
        )
    )
    np.testing.assert_array_equal(frames[[0, -1]], ends)
    gif = client.post("/v1/interpolate", json={**body, "format": "gif"})
    assert gif.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(gif.content)).n_frames >= 2
    webp = client.post("/v1/interpolate", json={**body, "format": "webp"})
    assert webp.headers["content-type"] == "image/webp"
    strip = Image.open(io.BytesIO(client.post("/v1/interpolate", json=body).content))
    assert strip.size == (5 * 30 + 2, 32)
    js = client.post("/v1/interpolate", json={**body, "format": "json", "method": "lerp"}).json()
    assert [f["t"] for f in js["frames"]] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    vec = [0.1] * 8
    r = client.post(
        "/v1/interpolate",
        json={"model": "tiny-gan", "from": {"latent": vec}, "to": {"seed": 4}, "format": "npy"},
    )
    assert npy(r).shape == (8, 28, 28, 1)
