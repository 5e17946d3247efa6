"""app.main: malformed bodies and unknown routes become problem+json answers."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from core import imaging
from tests.app.helpers import problem


def test_malformed_bodies(client: TestClient) -> None:
    problem(
        client.post("/v1/sample", content=b"{nope", headers={"content-type": "application/json"}),
        422,
    )
    problem(
        client.post("/v1/discriminate", content=b"hello", headers={"content-type": "text/plain"}),
        415,
    )
    problem(
        client.post(
            "/v1/discriminate",
            params={"model": "tiny-gan"},
            content=b"\x93NUMPY junk",
            headers={"content-type": "application/x-npy"},
        ),
        422,
    )
    wrong = imaging.encode_npy(np.zeros((2, 5, 5), np.uint8))
    problem(
        client.post(
            "/v1/discriminate",
            params={"model": "tiny-gan"},
            content=wrong,
            headers={"content-type": "application/x-npy"},
        ),
        422,
    )
    text = [("images", ("a.png", b"not an image at all", "image/png"))]
    problem(client.post("/v1/discriminate", data={"model": "tiny-gan"}, files=text), 415)
    nan = '{"model": "tiny-gan", "from": {"seed": 1}, "to": {"latent": [NaN, 0, 0, 0, 0, 0, 0, 0]}}'
    problem(
        client.post("/v1/interpolate", content=nan, headers={"content-type": "application/json"}),
        422,
    )
    problem(
        client.post(
            "/v1/interpolate",
            json={"from": {"seed": 1}, "to": {"latent": [1.0]}, "model": "tiny-gan"},
        ),
        422,
    )
    problem(
        client.post(
            "/v1/interpolate",
            json={"from": {"seed": 1}, "to": {"seed": 2}, "steps": 5000, "model": "tiny-gan"},
        ),
        413,
    )
    problem(client.get("/v1/nothing-here"), 404)
