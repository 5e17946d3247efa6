"""app.api.discriminate: POST /v1/discriminate as multipart, JSON and .npy, through the real app."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core import imaging
from tests.app.helpers import npy, problem
from tests.core.test_npy import forged


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


@pytest.mark.parametrize(
    ("descr", "shape"),
    [
        ("|u1", (0, 10**30)),  # reached numpy, which raised OverflowError: a 500
        ("|u1", (2**40, 2**40, 0)),  # numpy's "cannot reshape": a 500
        ("|u1", (10**7, 10**7, 28, 1)),  # 10**15 bytes declared, none sent
        ("|u1", (1,) * 40),
        ("<U4", (1, 28, 28, 1)),
        ("|O", (1, 28, 28, 1)),
    ],
)
def test_npy_bodies_declaring_absurd_shapes_are_refused_before_numpy(
    client: TestClient, descr: str, shape: tuple[int, ...]
) -> None:
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    r = client.post(
        "/v1/discriminate",
        params={"model": "tiny-gan"},
        content=forged(header, b"\x00" * 16),
        headers={"content-type": "application/x-npy"},
    )
    problem(r, 422)
    assert "npy" in r.json()["detail"]
    assert client.get("/healthz").json() == {"status": "ok"}
    fine = client.post("/v1/sample", json={"model": "tiny-gan", "seed": 1, "format": "npy"})
    assert npy(fine).shape == (1, 28, 28, 1)
