"""app.api.jobs: presets, and a job through every route (submit, events, log, samples, listing)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.app.helpers import problem, submit
from tests.conftest import ROOT


def test_presets_list_every_training_config_in_full(client: TestClient) -> None:
    r = client.get("/v1/presets")
    assert r.status_code == 200
    presets = {p["name"]: p for p in r.json()}
    assert set(presets) == {p.stem for p in (ROOT / "training" / "configs").glob("*.toml")}
    cdcgan = presets["cdcgan"]
    assert cdcgan["conditional"] and cdcgan["architecture"] == "dcgan"
    assert cdcgan["config"]["max_steps"] == cdcgan["max_steps"]
    assert presets["paper"]["config"]["optimizer"]["name"] == "sgd"


def test_a_job_trains_publishes_promotes_and_is_served(models_dir: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    job = submit(server.url, promote="always")
    events: list[str] = []
    with httpx.stream("GET", f"{server.url}/v1/jobs/{job['id']}/events", timeout=180) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            if line.startswith("data: ") and events[-1] == "state":
                if json.loads(line.removeprefix("data: "))["state"] in ("succeeded", "failed"):
                    break
    done = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded", done
    assert {"start", "progress", "evaluation", "state"} <= set(events)
    assert done["published_version"] == 2 and done["promoted"] is True
    assert done["progress"]["step"] == 12 and done["progress"]["max_steps"] == 12
    assert done["metrics"]["generated"]["mode_coverage"]["classes_covered"] >= 1
    sample = httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-cgan"})
    deadline = time.monotonic() + 20
    while sample.headers["x-model-version"] != "2" and time.monotonic() < deadline:
        time.sleep(0.2)
        sample = httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-cgan"})
    assert sample.headers["x-model-version"] == "2"
    grid = httpx.get(f"{server.url}/v1/jobs/{job['id']}/samples.png")
    assert grid.status_code == 200 and grid.content.startswith(b"\x89PNG")
    assert '"event": "completed"' in httpx.get(f"{server.url}/v1/jobs/{job['id']}/log").text
    listing = httpx.get(f"{server.url}/v1/jobs", params={"state": "succeeded"}).json()
    assert [j["id"] for j in listing["jobs"]] == [job["id"]]
    assert 'gan_jobs{state="succeeded"} 1.0' in httpx.get(f"{server.url}/metrics").text


# --- hostile identifiers and configs ------------------------------------------------------

LONG_OR_FOREIGN_IDS = ["f" * 300, "a" * 5000, "١٢٣", "ａｂｃ", "abc%0A", "%F0%9F%92%A5"]


@pytest.mark.parametrize("job_id", LONG_OR_FOREIGN_IDS)
def test_job_ids_that_are_not_short_ascii_hex_are_not_found_on_every_route(
    client: TestClient, job_id: str
) -> None:
    for method, suffix in [
        ("GET", ""),
        ("DELETE", ""),
        ("GET", "/log"),
        ("GET", "/samples.png"),
        ("GET", "/events"),
    ]:
        r = client.request(method, f"/v1/jobs/{job_id}{suffix}")
        body = problem(r, 404)
        assert body["detail"].startswith("no job") and len(body["detail"]) < 80, body
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/v1/jobs").json()["total"] == 0


@pytest.mark.parametrize("dataset", ["f" * 300, "a" * 33, "١٢٣", "ａｂｃ", "\ud800", "../x"])
def test_dataset_ids_that_are_not_short_ascii_hex_are_refused(
    client: TestClient, dataset: str
) -> None:
    body = json.dumps({"model": "tiny-cgan", "dataset": dataset})  # \ud800 as JSON escapes it
    r = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert problem(r, 422)["field"] == "dataset"
    assert client.get("/v1/jobs").json()["total"] == 0
    assert client.get("/healthz").json() == {"status": "ok"}


HOSTILE_OVERRIDES = {
    "file-path": ('{"dataset.source": "/etc"}', "dataset.source"),
    "models-folder": ('{"dataset.source": "models/mnist-gan"}', "dataset.source"),
    "nested-path": ('{"dataset": {"source": "core/data/mnist_5k.npz"}}', "dataset.source"),
    "infinity": ('{"optimizer.lr_min": Infinity}', "optimizer.lr_min"),
    "minus-infinity": ('{"optimizer.beta1": -Infinity}', "optimizer.beta1"),
    "nan": ('{"optimizer.lr_g": NaN}', "optimizer.lr_g"),
    "huge-split-seed": ('{"dataset.split_seed": 1' + "0" * 40 + "}", "dataset.split_seed"),
    "negative-split-seed": ('{"dataset.split_seed": -1}', "dataset.split_seed"),
    "huge-eval-interval": ('{"eval_every": 1000000000000}', "eval_every"),
    "huge-checkpoint-interval": ('{"checkpoint_every": 1000000000000}', "checkpoint_every"),
    "huge-log-interval": ('{"log_every": 1000000000000}', "log_every"),
    "huge-ramp": ('{"optimizer.momentum_ramp_steps": 1000000000000}', "momentum_ramp_steps"),
    "floor-above-rate": ('{"optimizer.lr_min": 0.01, "optimizer.lr_g": 0.001}', "optimizer"),
}


@pytest.mark.parametrize(("overrides", "where"), HOSTILE_OVERRIDES.values(), ids=HOSTILE_OVERRIDES)
def test_job_overrides_name_no_server_paths_and_only_finite_bounded_numbers(
    client: TestClient, overrides: str, where: str
) -> None:
    body = '{"model": "tiny-cgan", "preset": "paper", "overrides": ' + overrides + "}"
    r = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    refusal = problem(r, 422)
    assert where in (refusal["field"] or "") + refusal["detail"], refusal
    assert client.get("/v1/jobs").json()["total"] == 0  # nothing recorded, no null stored
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_job_trains_on_built_in_data_or_an_uploaded_dataset_by_id(
    client: TestClient, models_dir: Path
) -> None:
    jobs = models_dir.parent / "data" / "jobs"
    overrides = {"dataset.source": "builtin:mnist", "max_steps": 3}
    r = client.post("/v1/jobs", json={"model": "tiny-cgan", "overrides": overrides})
    assert r.status_code == 202, r.text
    config = json.loads((jobs / r.json()["id"] / "config.json").read_text())
    assert config["dataset"]["source"] == "builtin:mnist"

    arrays = io.BytesIO()
    np.savez(arrays, images=np.zeros((4, 28, 28), np.uint8), labels=np.array([0, 1, 0, 1]))
    made = client.post("/v1/datasets", files={"file": ("d.npz", arrays.getvalue())})
    assert made.status_code == 201, made.text
    r = client.post("/v1/jobs", json={"model": "tiny-cgan", "dataset": made.json()["id"]})
    assert r.status_code == 202, r.text
    source = json.loads((jobs / r.json()["id"] / "config.json").read_text())["dataset"]["source"]
    assert (
        Path(source) == models_dir.parent / "data" / "datasets" / made.json()["id"] / "dataset.npz"
    )
