"""app.api.health: /healthz, /readyz and /metrics (and the OpenAPI document they sit in)."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient


def test_health_ready_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["models"]["tiny-gan"]["version"] == 1
    client.post("/v1/sample", json={"model": "tiny-gan", "n": 3})
    text = client.get("/metrics").text
    assert 'gan_images_generated_total{model="tiny-gan",version="1"} 3.0' in text
    assert 'gan_http_requests_total{method="POST",route="/v1/sample",status="200"}' in text
    assert 'gan_model_loaded_version{model="tiny-cgan"} 1.0' in text
    assert "gan_batch_size_bucket" in text
    doc = client.get("/openapi.json").json()
    assert {"/v1/sample", "/v1/discriminate", "/v1/interpolate", "/v1/models"} <= set(doc["paths"])
    # Every reference resolves: a client generated from the document knows each body it gets.
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert {"SampleResponse", "SampleItem"} <= refs <= set(doc["components"]["schemas"])
    # JSON bodies keep their named schemas.
    for path, method, model in [
        ("/v1/sample", "post", "SampleRequest"),
        ("/v1/interpolate", "post", "InterpolateRequest"),
        ("/v1/jobs", "post", "JobRequest"),
        ("/v1/models/{name}/aliases/{alias}", "put", "AliasUpdate"),
    ]:
        body = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{model}"}
    sample = doc["components"]["schemas"]["SampleRequest"]
    assert {"n", "seed", "seeds", "format"} <= set(sample["properties"])
    assert sample["additionalProperties"] is False


def test_health_routes_answer_head_probes(client: TestClient) -> None:
    for path in ("/healthz", "/readyz"):
        r = client.head(path)
        assert r.status_code == 200 and r.content == b"", path
        assert r.headers["content-type"] == "application/json"
