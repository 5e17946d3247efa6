"""app.api.jobs: presets, and a job through every route (submit, events, log, samples, listing)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from tests.app.helpers import submit
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
