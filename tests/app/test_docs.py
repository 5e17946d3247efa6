"""app.docs: /docs and /redoc reference only assets the service serves itself, and those load."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def test_docs_pages_work_offline(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert not re.findall(r"https?://", html.text), page  # no CDN, no fonts, no validator
        refs = re.findall(r'(?:src|href)\s*=\s*"([^"]+)"', html.text)
        assert len(refs) >= 2, html.text
        for ref in refs:
            assert ref.startswith("/docs-assets/"), ref
            asset = client.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 4000, ref
            assert TYPES[ref[ref.rindex(".") :]] in asset.headers["content-type"], ref
        assert "/openapi.json" in html.text
    assert client.get("/openapi.json").json()["info"]["title"] == "gan-serve"
