"""app.api.models: the model listing, a version's samples grid and alias updates."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from core.repository import Repository
from tests.app.helpers import problem


def test_models_listing_and_alias_promotion(client: TestClient, models_dir: Path) -> None:
    listing = client.get("/v1/models").json()
    assert {m["name"] for m in listing} == {"tiny-gan", "tiny-cgan"}
    detail = client.get("/v1/models/tiny-cgan").json()
    assert detail["serving_version"] == 1
    manifest = detail["versions"][0]
    assert manifest["num_classes"] == 10 and "generator.onnx" in manifest["artifacts"]
    problem(client.get("/v1/models/nope"), 404)
    problem(client.put("/v1/models/tiny-gan/aliases/production", json={"version": 7}), 404)
    assert client.put("/v1/models/tiny-gan/aliases/canary", json={"version": 1}).status_code == 200
    assert client.get("/v1/models/tiny-gan").json()["aliases"] == {"production": 1, "canary": 1}
    r = client.post("/v1/sample", json={"model": "tiny-gan", "version": "canary"})
    assert r.headers["x-model-version"] == "1"


def test_a_version_serves_its_samples_grid(client: TestClient, models_dir: Path) -> None:
    url = "/v1/models/tiny-cgan/versions/1/samples.png"
    grid = models_dir / "tiny-cgan" / "1" / "samples.png"
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == grid.read_bytes()
    problem(client.get("/v1/models/tiny-cgan/versions/9/samples.png"), 404)
    problem(client.get("/v1/models/nope/versions/1/samples.png"), 404)
    problem(client.get("/v1/models/tiny-cgan/versions/0/samples.png"), 422)
    problem(client.get("/v1/models/Not..Ok/versions/1/samples.png"), 422)
    grid.write_bytes(grid.read_bytes()[:-1])  # not what the manifest's sha256 names
    assert "sha256" in problem(client.get(url), 500)["detail"]


def test_the_listing_shows_the_production_versions_scores(
    client: TestClient, models_dir: Path
) -> None:
    listing = {m["name"]: m for m in client.get("/v1/models").json()}
    assert listing["tiny-cgan"]["scores"] == {}  # published without evaluation
    usefulness = {"cas": 0.5, "cas_real": 0.9, "prdc": {"precision": 0.25, "recall": 0.75}}
    Repository(models_dir).amend_metrics("tiny-cgan", 1, "usefulness", usefulness)
    listing = {m["name"]: m for m in client.get("/v1/models").json()}
    assert listing["tiny-cgan"]["scores"] == {"cas": 0.5, "precision": 0.25, "recall": 0.75}
    detail = client.get("/v1/models/tiny-cgan").json()
    assert detail["versions"][0]["metrics"]["usefulness"] == usefulness
