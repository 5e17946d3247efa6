"""app.api.discriminate: POST /v1/discriminate as multipart, JSON and .npy, through the real app."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core import imaging
from tests.app.helpers import npy, problem


def test_discriminate_multipart_json_and_npy_agree(client: TestClient) -> None:
    images = npy(
        client.post("/v1/sample", json={"model": "tiny-gan", "seed": 0, "n": 3, "format": "npy"})
    )
    pngs = [imaging.encode_png(im) for im in images]
    multi = client.post(
        "/v1/discriminate",
        data={"model": "tiny-gan"},
        files=[("images", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)],
    )
    assert multi.status_code == 200, multi.text
    as_json = client.post(
        "/v1/discriminate",
        json={"model": "tiny-gan", "images": [base64.b64encode(p).decode() for p in pngs]},
    )
    as_npy = client.post(
        "/v1/discriminate",
        params={"model": "tiny-gan"},
        content=imaging.encode_npy(images),
        headers={"content-type": "application/x-npy"},
    )
    results = [r.json()["results"] for r in (multi, as_json, as_npy)]
    assert results[0] == results[1] == results[2]
    for score in results[0]:
        assert score["probability_real"] == pytest.approx(1 / (1 + np.exp(-score["logit"])))


def test_discriminate_conditional_needs_labels_and_resize(client: TestClient) -> None:
    big = imaging.encode_png(np.full((56, 56, 1), 200, np.uint8))
    files = [("images", ("a.png", big, "image/png"))]
    problem(
        client.post("/v1/discriminate", data={"model": "tiny-cgan", "labels": "1"}, files=files),
        422,
    )
    ok = client.post(
        "/v1/discriminate",
        data={"model": "tiny-cgan", "labels": "1", "resize": "true"},
        files=files,
    )
    assert ok.status_code == 200 and len(ok.json()["results"]) == 1
    missing = problem(
        client.post("/v1/discriminate", data={"model": "tiny-cgan", "resize": "true"}, files=files),
        422,
    )
    assert missing["field"] == "labels"


def test_one_label_applies_to_every_image_in_every_form(client: TestClient) -> None:
    images = npy(
        client.post(
            "/v1/sample",
            json={"model": "tiny-cgan", "seed": 5, "n": 3, "labels": 4, "format": "npy"},
        )
    )
    pngs = [imaging.encode_png(im) for im in images]
    each = client.post(
        "/v1/discriminate",
        json={
            "model": "tiny-cgan",
            "labels": [4, 4, 4],
            "images": [base64.b64encode(p).decode() for p in pngs],
        },
    )
    assert each.status_code == 200, each.text
    forms = [
        client.post(
            "/v1/discriminate",
            data={"model": "tiny-cgan", "labels": "4"},
            files=[("images", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)],
        ),
        client.post(
            "/v1/discriminate",
            json={
                "model": "tiny-cgan",
                "labels": 4,
                "images": [base64.b64encode(p).decode() for p in pngs],
            },
        ),
        client.post(
            "/v1/discriminate",
            json={
                "model": "tiny-cgan",
                "labels": [4],
                "images": [base64.b64encode(p).decode() for p in pngs],
            },
        ),
        client.post(
            "/v1/discriminate",
            params={"model": "tiny-cgan", "labels": "4"},
            content=imaging.encode_npy(images),
            headers={"content-type": "application/x-npy"},
        ),
    ]
    for r in forms:
        assert r.status_code == 200, r.text
        assert r.json()["results"] == each.json()["results"]
    two = client.post(
        "/v1/discriminate",
        json={
            "model": "tiny-cgan",
            "labels": [4, 4],
            "images": [base64.b64encode(p).decode() for p in pngs],
        },
    )
    assert "give one" in problem(two, 422)["detail"]
