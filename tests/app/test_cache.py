"""app.cache through the real app: ETags, Cache-Control, 304s and the bounded response cache.

A sample from explicit seeds is named by the request and the version that drew it: the same
request gets the same strong ETag and the same bytes (from memory the second time), a pinned
version is immutable, an alias is kept briefly, and random seeds are never cached.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import app_settings

PINNED = {"model": "tiny-gan", "version": 1, "seeds": [3, 4], "format": "npy"}


@pytest.fixture
def client(models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings(models_dir, alias_max_age_s=7))) as c:
        yield c


def _counter(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_pinned_sample_is_immutable_and_served_again_from_memory(client: TestClient) -> None:
    first = client.post("/v1/sample", json=PINNED)
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('"') and not tag.startswith("W/")
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    hits = _counter(client, "gan_response_cache_hits_total")
    again = client.post("/v1/sample", json=PINNED)
    assert again.content == first.content and again.headers["etag"] == tag
    assert again.headers["x-model-version"] == "1"
    assert _counter(client, "gan_response_cache_hits_total") == hits + 1
    assert _counter(client, "gan_response_cache_bytes") >= len(first.content)
    other = client.post("/v1/sample", json={**PINNED, "seeds": [3, 5]})
    assert other.headers["etag"] != tag and other.content != first.content
    as_png = client.post("/v1/sample", json={**PINNED, "format": "png"})
    assert as_png.headers["etag"] != tag


def test_if_none_match_answers_304_without_a_body(client: TestClient) -> None:
    tag = client.post("/v1/sample", json=PINNED).headers["etag"]
    for header in (tag, f"W/{tag}", f'"other", {tag}', "*"):
        r = client.post("/v1/sample", json=PINNED, headers={"If-None-Match": header})
        assert r.status_code == 304 and r.content == b"", header
        assert r.headers["etag"] == tag and r.headers["x-model-version"] == "1"
    fresh = client.post("/v1/sample", json=PINNED, headers={"If-None-Match": '"stale"'})
    assert fresh.status_code == 200 and fresh.headers["etag"] == tag
    url = "/v1/sample.png?model=tiny-gan&version=1&seed=9&n=4"
    png = client.get(url)
    assert png.headers["cache-control"].endswith("immutable")
    assert client.get(url, headers={"If-None-Match": png.headers["etag"]}).status_code == 304


def test_an_alias_is_kept_briefly_and_names_the_version_it_resolved_to(
    client: TestClient,
) -> None:
    body = {**PINNED, "version": "production"}
    r = client.post("/v1/sample", json=body)
    assert r.headers["cache-control"] == "public, max-age=7"
    assert r.headers["x-model-version"] == "1"
    pinned = client.post("/v1/sample", json=PINNED)  # the same bytes, named alike
    assert pinned.content == r.content and pinned.headers["etag"] == r.headers["etag"]
    assert pinned.headers["cache-control"].endswith("immutable")
    again = client.post("/v1/sample", json=body)  # from memory, still the alias's policy
    assert again.headers["cache-control"] == "public, max-age=7"
    assert (
        client.post("/v1/sample", json={**body, "model": None}).headers["cache-control"]
        == "public, max-age=7"
    )  # the default model may change too


def test_random_seeds_are_never_cached(client: TestClient) -> None:
    r = client.post("/v1/sample", json={"model": "tiny-gan", "version": 1, "n": 2})
    assert r.status_code == 200
    assert "etag" not in r.headers and "cache-control" not in r.headers


def test_the_cache_holds_at_most_its_bytes_and_none_when_off(models_dir: Path) -> None:
    with TestClient(create_app(app_settings(models_dir, response_cache_bytes=4000))) as c:
        for seed in range(6):  # six 1,680-byte npy bodies through a 4,000-byte cache
            c.post("/v1/sample", json={**PINNED, "seeds": [seed, seed + 1]})
        assert 0 < _counter(c, "gan_response_cache_bytes") <= 4000
        hits = _counter(c, "gan_response_cache_hits_total")
        c.post("/v1/sample", json={**PINNED, "seeds": [0, 1]})  # the oldest: evicted
        assert _counter(c, "gan_response_cache_hits_total") == hits
        c.post("/v1/sample", json={**PINNED, "seeds": [5, 6]})  # the newest: kept
        assert _counter(c, "gan_response_cache_hits_total") == hits + 1
    with TestClient(create_app(app_settings(models_dir, response_cache_bytes=0))) as c:
        c.post("/v1/sample", json=PINNED)
        r = c.post("/v1/sample", json=PINNED)
        assert r.headers["cache-control"].endswith("immutable")  # the headers still hold
        assert _counter(c, "gan_response_cache_hits_total") == 0
        assert _counter(c, "gan_response_cache_bytes") == 0
