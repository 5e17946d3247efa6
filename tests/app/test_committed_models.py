"""The models committed in models/: intact, servable, and their discriminators tell digits
from noise."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from core import imaging
from core.datasets import load_dataset
from core.repository import Repository
from core.scores import scores
from training.report import figures_table, usefulness_table

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ["mnist-cdcgan", "mnist-gan"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        models_dir=ROOT / "models",
        data_dir=tmp_path_factory.mktemp("data"),
        registry_poll_seconds=0,
        embedded_worker=False,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_the_committed_models_are_intact_and_documented() -> None:
    repo = Repository(ROOT / "models")
    assert repo.models() == COMMITTED
    for name in COMMITTED:
        m = repo.verify(name, repo.resolve(name, None))
        assert {"generator.onnx", "generator.pt", "discriminator.onnx", "discriminator.pt"} <= set(
            m.artifacts
        )
        assert m.training["command"].startswith("python -m training train")
        generated = m.metrics["generated"]
        assert generated["samples"] == 10_000
        assert {"fid", "mode_coverage", "parzen"} <= set(generated)
        assert "real_reference" in m.metrics


def test_the_served_versions_meet_the_quality_bar() -> None:
    """All ten classes for both; for the conditional DCGAN, 95% label accuracy and an FID at
    most 3x the real reference's (the MLP GAN misses that last bar: see the README)."""
    repo = Repository(ROOT / "models")
    for name in COMMITTED:
        metrics = repo.manifest(name, repo.resolve(name, None)).metrics
        assert metrics["generated"]["mode_coverage"]["classes_covered"] == 10, name
    cdcgan = repo.manifest("mnist-cdcgan", repo.resolve("mnist-cdcgan", None)).metrics
    assert cdcgan["generated"]["label_accuracy"] >= 0.95
    assert cdcgan["generated"]["fid"] <= 3 * cdcgan["real_reference"]["fid"]


def test_every_committed_version_carries_its_usefulness_scores() -> None:
    repo = Repository(ROOT / "models")
    for name in COMMITTED:
        for version in repo.versions(name):
            m = repo.manifest(name, version)
            block = m.metrics["usefulness"]
            assert block["command"] == f"python -m training score models/{name}/{version}"
            assert block["protocol"]["samples"] == 10_000
            expected = {"precision", "recall", "density", "coverage"}
            expected |= {"cas", "nas"} if m.conditional else set()
            assert expected <= scores(m.metrics).keys(), (name, version)
            assert ("cas_real" in block) == m.conditional


def test_the_model_listing_shows_the_production_versions_scores(client: TestClient) -> None:
    repo = Repository(ROOT / "models")
    listing = {m["name"]: m for m in client.get("/v1/models").json()}
    for name in COMMITTED:
        production = repo.manifest(name, repo.resolve(name, None))
        assert listing[name]["scores"] == scores(production.metrics)
    assert {"fid", "cas", "precision", "coverage"} <= listing["mnist-cdcgan"]["scores"].keys()


def test_the_readme_tables_are_the_committed_figures() -> None:
    """`python -m training report` prints them; the README shows what it prints."""
    readme = (ROOT / "README.md").read_text()
    repo = Repository(ROOT / "models")
    missing = [line for line in figures_table(repo) + usefulness_table(repo) if line not in readme]
    assert missing == []


@pytest.mark.parametrize("name", COMMITTED)
def test_discriminators_score_held_out_digits_above_noise(client: TestClient, name: str) -> None:
    _, held_out = load_dataset("builtin:mnist").split(0.1, 0)
    digits = held_out.images[:200].transpose(0, 2, 3, 1)  # [N, 28, 28, 1]
    noise = np.random.default_rng(0).integers(0, 256, digits.shape, dtype=np.uint8)
    labels = ",".join(map(str, held_out.labels[:200].tolist()))

    def mean_probability(images: np.ndarray) -> float:
        params = {"model": name}
        if name == "mnist-cdcgan":
            params["labels"] = labels
        r = client.post(
            "/v1/discriminate",
            params=params,
            content=imaging.encode_npy(images),
            headers={"content-type": "application/x-npy"},
        )
        assert r.status_code == 200, r.text
        return float(np.mean([s["probability_real"] for s in r.json()["results"]]))

    assert mean_probability(digits) > mean_probability(noise)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_generators_serve(client: TestClient, name: str) -> None:
    r = client.post("/v1/sample", json={"model": name, "seed": 0, "n": 4, "format": "npy"})
    assert r.status_code == 200 and r.headers["x-model"] == name


def test_the_readme_says_what_the_conditional_score_is_not(client: TestClient) -> None:
    """The README's figure: how often D scores a real digit's right label above a wrong one."""
    _, held_out = load_dataset("builtin:mnist").split(0.1, 0)
    digits = held_out.images[:256].transpose(0, 2, 3, 1)  # one request's worth
    right = held_out.labels[:256].astype(np.int64)
    wrong = (right + 1 + np.random.default_rng(0).integers(0, 9, len(right))) % 10

    def logits(labels: np.ndarray) -> np.ndarray:
        r = client.post(
            "/v1/discriminate",
            params={"model": "mnist-cdcgan", "labels": ",".join(map(str, labels.tolist()))},
            content=imaging.encode_npy(digits),
            headers={"content-type": "application/x-npy"},
        )
        assert r.status_code == 200, r.text
        return np.array([s["logit"] for s in r.json()["results"]])

    share = float(np.mean(logits(right) > logits(wrong)))
    readme = (ROOT / "README.md").read_text()
    assert f"label above a wrong one for only {round(share * 100)}% of them" in readme, share


def test_the_readmes_seed_snippet_reproduces_the_served_images(client: TestClient) -> None:
    """The README's numpy + ONNX Runtime snippet, run as written, gives /v1/sample's npy."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Reproducing an image from its seed", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, object] = {}
    cwd = Path.cwd()
    try:
        os.chdir(ROOT)  # the snippet opens models/... relative to the repository
        exec(code, scope)
    finally:
        os.chdir(cwd)
    r = client.post(
        "/v1/sample", json={"model": "mnist-cdcgan", "seeds": [7, 8, 9], "format": "npy"}
    )
    served = np.load(io.BytesIO(r.content))
    assert np.array_equal(scope["img"], served)


def test_the_readmes_sample_response_names_the_served_version(client: TestClient) -> None:
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r'\{"model":"mnist-gan","version":(\d+),', readme)
    assert shown is not None
    r = client.post("/v1/sample", json={"model": "mnist-gan", "seed": 7, "n": 2, "format": "json"})
    assert r.json()["version"] == int(shown.group(1))
