"""Job records scaled out: api replicas that share no filesystem share the records in Redis,
and the records outlive every replica."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis

from tests.app.helpers import private_redis, submit
from tests.conftest import Server


def test_replicas_with_no_shared_files_share_records_that_outlive_them(
    models_dir: Path, tmp_path: Path
) -> None:
    url = private_redis(12)
    env = {"GAN_MODELS_DIR": str(models_dir), "GAN_QUEUE_URL": url}
    # Each replica its own data directory: nothing on disk is shared. No worker runs here.
    first, second = (Server({**env, "GAN_DATA_DIR": str(tmp_path / n)}) for n in ("a", "b"))
    try:
        first.wait_ready()
        second.wait_ready()
        queued = submit(first.url)
        cancelled = submit(first.url)
        assert httpx.get(f"{second.url}/v1/jobs/{queued['id']}").json() == queued
        gone = httpx.delete(f"{second.url}/v1/jobs/{cancelled['id']}")
        assert gone.status_code == 200 and gone.json()["state"] == "cancelled"
        assert httpx.get(f"{first.url}/v1/jobs/{cancelled['id']}").json()["state"] == "cancelled"
    finally:
        first.stop()
        second.stop()
    assert not (tmp_path / "a" / "jobs" / queued["id"]).exists()  # no file holds a record

    # Every replica restarted, on another machine's disk for all it knows.
    third = Server({**env, "GAN_DATA_DIR": str(tmp_path / "c")})
    try:
        third.wait_ready()
        listed = httpx.get(f"{third.url}/v1/jobs").json()
        assert [j["id"] for j in listed["jobs"]] == [cancelled["id"], queued["id"]]
        assert listed["jobs"][1] == queued
        queued_only = httpx.get(f"{third.url}/v1/jobs", params={"state": "queued"}).json()
        assert [j["id"] for j in queued_only["jobs"]] == [queued["id"]]
    finally:
        third.stop()
        with redis.Redis.from_url(url) as client:
            client.flushdb()
