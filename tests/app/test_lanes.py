"""app.lanes: uploads decode on threads of their own, so other requests do not queue behind them.

A real server with one upload thread, six large uploads at once (each a 4096 x 4096 image to
decode and resize), and /v1/models asked for while they run: its answers come back before the
first upload is done.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image

from tests.conftest import Server


def _big_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4096, 4096), 90).save(buf, "PNG")
    return buf.getvalue()


def test_six_large_uploads_do_not_hold_up_other_requests(
    start_server: Callable[..., Server], models_dir: Path
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir), GAN_UPLOAD_THREADS="1")
    png = _big_png()
    done: list[float] = []
    statuses: list[int] = []

    def upload() -> None:
        r = httpx.post(
            f"{server.url}/v1/discriminate",
            data={"model": "tiny-gan", "resize": "true"},
            files=[("images", (f"{i}.png", png, "image/png")) for i in range(8)],
            timeout=120,
        )
        statuses.append(r.status_code)
        done.append(time.monotonic())

    uploads = [threading.Thread(target=upload) for _ in range(6)]
    for t in uploads:
        t.start()
    time.sleep(0.3)
    answered = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(3):
            assert client.get("/v1/models").status_code == 200
            answered.append(time.monotonic())
    for t in uploads:
        t.join()
    assert statuses == [200] * 6
    # On one shared pool, /v1/models waited for a thread that an upload let go of.
    assert max(answered) < min(done), "/v1/models waited for an upload to finish"
