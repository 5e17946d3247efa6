"""app.api.exports: an export job end to end over HTTP, its downloads, and every refusal."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.helpers import npy, problem, wait_state
from tests.conftest import Server, app_settings


def start_export(url: str, **body: object) -> dict:
    r = httpx.post(f"{url}/v1/exports", json={"model": "tiny-cgan", **body})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    return r.json()


def events_until_done(url: str, job_id: str) -> list[str]:
    kinds: list[str] = []
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                kinds.append(line.removeprefix("event: "))
            if line.startswith("data: ") and kinds[-1] == "state":
                if json.loads(line.removeprefix("data: "))["state"] in ("succeeded", "failed"):
                    break
    return kinds


def test_an_export_job_makes_shards_of_the_images_sample_draws(
    models_dir: Path, start_server
) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    url = server.url
    job = start_export(url, version="production", n=30, seed=5, shard_size=10)
    assert job["kind"] == "export" and job["export"]["version"] == 1  # the alias, pinned
    assert job["progress"]["images_total"] == 30 and job["progress"]["shards_total"] == 3
    assert {"start", "progress", "completed", "state"} <= set(events_until_done(url, job["id"]))
    done = httpx.get(f"{url}/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded", done
    assert done["progress"]["images"] == 30 and done["progress"]["shards"] == 3
    assert [j["id"] for j in httpx.get(f"{url}/v1/exports").json()["jobs"]] == [job["id"]]

    doc = httpx.get(f"{url}/v1/exports/{job['id']}/manifest.json").json()
    assert doc["complete"] and doc["model"]["name"] == "tiny-cgan" and doc["model"]["version"] == 1
    entry = doc["shards"][1]
    r = httpx.get(f"{url}/v1/exports/{job['id']}/shards/{entry['name']}")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == entry["sha256"]
    assert r.headers["etag"] == f'"{entry["sha256"]}"'
    assert "immutable" in r.headers["cache-control"]
    with np.load(io.BytesIO(r.content)) as shard:
        images, seeds, labels = shard["images"], shard["seeds"], shard["labels"]
    assert seeds.tolist() == list(range(15, 25)) and labels.tolist() == [s % 10 for s in seeds]
    same = httpx.post(
        f"{url}/v1/sample",
        json={"model": "tiny-cgan", "version": 1, "seeds": seeds.tolist(), "format": "npy"},
    )
    assert np.array_equal(npy(same), images)  # an export image is the one /v1/sample names

    part = httpx.get(
        f"{url}/v1/exports/{job['id']}/shards/{entry['name']}", headers={"Range": "bytes=100-1099"}
    )
    assert part.status_code == 206 and part.content == r.content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{entry['bytes']}"


def test_a_cancelled_export_resumes_keeping_its_finished_shards(
    models_dir: Path, start_server
) -> None:  # type: ignore[no-untyped-def]
    server = start_server(GAN_MODELS_DIR=str(models_dir))
    url = server.url
    job = start_export(url, n=100_000, shard_size=500, label=4)
    with httpx.stream("GET", f"{url}/v1/jobs/{job['id']}/events", timeout=120) as r:
        for line in r.iter_lines():
            if line == "event: progress":  # a shard is done: stop half-way
                assert httpx.delete(f"{url}/v1/jobs/{job['id']}").status_code == 200
                break
    stopped = wait_state(url, job["id"], {"cancelled", "succeeded"})
    assert stopped["state"] == "cancelled", stopped
    before = httpx.get(f"{url}/v1/exports/{job['id']}/manifest.json").json()
    assert not before["complete"] and 0 < len(before["shards"]) < 200

    resumed = httpx.post(f"{url}/v1/jobs/{job['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "queued"
    assert wait_state(url, job["id"], {"succeeded", "failed"})["state"] == "succeeded"
    after = httpx.get(f"{url}/v1/exports/{job['id']}/manifest.json").json()
    assert after["complete"] and after["images"] == 100_000
    assert after["shards"][: len(before["shards"])] == before["shards"]
    assert all(s["label_counts"][4] == s["count"] for s in after["shards"])
    log = httpx.get(f"{url}/v1/jobs/{job['id']}/log").text
    starts = [json.loads(line) for line in log.splitlines() if '"event": "start"' in line]
    assert starts[-1]["shards"] == len(before["shards"])  # the resume began where it stopped
    again = problem(httpx.post(f"{url}/v1/jobs/{job['id']}/resume"), 409)
    assert "succeeded" in again["detail"]

    assert httpx.delete(f"{url}/v1/exports/{job['id']}").status_code == 204  # files and all
    problem(httpx.get(f"{url}/v1/jobs/{job['id']}"), 404)
    problem(httpx.get(f"{url}/v1/exports/{job['id']}/shards/shard-000000.npz"), 404)
    assert [j["id"] for j in httpx.get(f"{url}/v1/exports").json()["jobs"]] == []


def test_an_export_cut_by_a_server_restart_resumes_after_it(
    models_dir: Path, tmp_path: Path
) -> None:
    env = {"GAN_MODELS_DIR": str(models_dir), "GAN_DATA_DIR": str(tmp_path / "data")}
    first = Server(env)
    try:
        first.wait_ready()
        job = start_export(first.url, n=100_000, shard_size=500)
        with httpx.stream("GET", f"{first.url}/v1/jobs/{job['id']}/events", timeout=120) as r:
            for line in r.iter_lines():
                if line == "event: progress":
                    break
    finally:
        first.stop()  # SIGTERM: the export stops at a shard boundary and goes back on the queue
    index = tmp_path / "data" / "jobs" / job["id"] / "export" / "index.jsonl"
    kept = len(index.read_text().splitlines())
    assert 0 < kept < 200
    second = Server(env)
    try:
        second.wait_ready()
        done = wait_state(second.url, job["id"], {"succeeded", "failed"})
        assert done["state"] == "succeeded", done
        assert done["progress"]["images"] == 100_000
    finally:
        second.stop()
    names = [json.loads(line)["name"] for line in index.read_text().splitlines()]
    assert len(names) == len(set(names)) == 200  # no shard made twice


@pytest.fixture
def local(models_dir: Path) -> TestClient:
    settings = app_settings(models_dir, max_export_images=1000)
    with TestClient(create_app(settings)) as c:
        yield c  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "nope", "n": 5}, "model"),
        ({"model": "tiny-cgan", "version": 9, "n": 5}, "version"),
        ({"model": "tiny-cgan", "version": "staging", "n": 5}, "version"),
        ({"model": "tiny-gan", "n": 5, "label": 1}, "label"),
        ({"model": "tiny-cgan", "n": 5, "label": 10}, "label"),
        ({"model": "tiny-cgan", "n": 5, "label_mix": [1, 2]}, "label_mix"),
        ({"model": "tiny-cgan", "n": 1001}, "n"),
        ({"model": "tiny-cgan", "n": 0}, "n"),
        ({"model": "tiny-cgan", "n": "5"}, "n"),
        ({"model": "tiny-cgan", "n": 5, "shard_size": 0}, "shard_size"),
        ({"model": "tiny-cgan", "n": 5, "format": "zip"}, "format"),
        ({"model": "tiny-cgan", "n": 5, "seed": -1}, "seed"),
        ({"model": "tiny-cgan", "n": 5, "truncation": -1}, "truncation"),
        ({"model": "tiny-cgan", "n": 5, "truncation": 0.001}, "truncation"),
        ({"model": "tiny-cgan", "n": 5, "extra": 1}, "extra"),
        ({"model": "../x", "n": 5}, "model"),
    ],
)
def test_bad_exports_are_refused_naming_the_field(
    local: TestClient, body: dict, field: str
) -> None:
    r = local.post("/v1/exports", json=body)
    assert r.status_code == 422, r.text
    detail = problem(r, 422)
    assert field in (detail.get("field") or "") + json.dumps(detail.get("errors")), detail


@pytest.mark.parametrize(
    "body",
    [
        {"model": "tiny-cgan", "n": 5, "label": 1, "label_mix": [1] * 10},
        {"model": "tiny-cgan", "n": 2, "seed": 2**63 - 1},
        {"model": "tiny-cgan", "n": 5, "label_mix": [0] * 10},
    ],
)
def test_inconsistent_exports_are_refused(local: TestClient, body: dict) -> None:
    assert problem(local.post("/v1/exports", json=body), 422)["detail"]


def test_an_export_bigger_than_the_disk_is_507(models_dir: Path) -> None:
    settings = app_settings(models_dir, max_export_images=10**11)
    with TestClient(create_app(settings)) as c:
        body = {"model": "tiny-cgan", "n": 10**11, "shard_size": 100_000}
        assert "GB" in problem(c.post("/v1/exports", json=body), 507)["detail"]


def test_what_is_not_an_export_or_not_finished_is_not_found(
    local: TestClient, models_dir: Path
) -> None:
    export = local.post("/v1/exports", json={"model": "tiny-cgan", "n": 5}).json()
    assert export["state"] == "queued"  # no worker in this app
    pending = local.get(f"/v1/exports/{export['id']}/manifest.json").json()
    assert pending["complete"] is False and pending["shards"] == [] and pending["images"] == 0
    assert pending["model"]["name"] == "tiny-cgan" and pending["spec"]["n"] == 5
    for name in ("shard-000000.npz", "../job.json", "header.json", "index.jsonl", "s" * 5000):
        refused = problem(local.get(f"/v1/exports/{export['id']}/shards/{name}"), 404)
        assert len(refused["detail"]) < 100, refused
    training = submit_local(local)
    assert (
        "not an export"
        in problem(local.get(f"/v1/exports/{training}/manifest.json"), 404)["detail"]
    )
    assert problem(local.post(f"/v1/jobs/{export['id']}/resume"), 409)["detail"]
    assert "cancel it first" in problem(local.delete(f"/v1/exports/{export['id']}"), 409)["detail"]
    problem(local.delete(f"/v1/exports/{training}"), 404)
    assert local.delete(f"/v1/jobs/{export['id']}").json()["state"] == "cancelled"
    folder = models_dir.parent / "data" / "jobs" / export["id"]
    assert (folder / "export" / "header.json").is_file()
    assert local.delete(f"/v1/exports/{export['id']}").status_code == 204
    assert not folder.exists()


def submit_local(c: TestClient) -> str:
    r = c.post("/v1/jobs", json={"model": "tiny-cgan", "preset": "cdcgan"})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_exports_need_the_admin_key(models_dir: Path) -> None:
    with TestClient(create_app(app_settings(models_dir, api_key="k" * 32))) as c:
        problem(c.post("/v1/exports", json={"model": "tiny-cgan", "n": 5}), 401)
        ok = c.post(
            "/v1/exports",
            json={"model": "tiny-cgan", "n": 5},
            headers={"Authorization": "Bearer " + "k" * 32},
        )
        assert ok.status_code == 202
        problem(c.post(f"/v1/jobs/{ok.json()['id']}/resume"), 401)
