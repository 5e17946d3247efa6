"""Pure ASGI middleware: request ids, access logs, metrics and the body-size limit.

Written against ASGI directly (not BaseHTTPMiddleware) so streaming bodies pass through
untouched and the size limit applies before any handler parses a byte.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics

access_log = logging.getLogger("app.access")


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body: int,
        max_body_by_path: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.max_body_by_path = max_body_by_path or {}
        # Request ids: a random prefix per process and a counter. uuid4 per request would read
        # os.urandom, which lets go of the GIL, and the batcher threads are waiting to take it.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or self._next_id()
        max_body = self.max_body_by_path.get(scope["path"], self.max_body)
        length = headers.get(b"content-length")
        # More digits than any limit has is over it: int() refuses past 4,300 digits anyway.
        if length is not None and length.isdigit() and (len(length) > 18 or int(length) > max_body):
            await _too_large(send, max_body, request_id)
            self._record(scope, 413, 0.0, request_id)
            return

        status = 500
        received = 0
        model: dict[str, str] = {}

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_body:  # chunked bodies carry no Content-Length
                raise HTTPException(413, f"the request body is over {max_body} bytes")
            return message

        logging_access = access_log.isEnabledFor(logging.INFO)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = list(message.get("headers", []))
                for key, value in raw if logging_access else ():
                    if key == b"x-model":
                        model["model"] = value.decode()
                    elif key == b"x-model-version":
                        model["version"] = value.decode()
                    elif key == b"x-count":
                        model["n"] = value.decode()
                raw.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": raw}
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, limited_receive, send_wrapper)
        finally:
            self._record(scope, status, time.perf_counter() - start, request_id, model)

    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):016x}"

    def _record(
        self,
        scope: Scope,
        status: int,
        seconds: float,
        request_id: str,
        model: dict[str, str] | None = None,
    ) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"]
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            fields: dict[str, Any] = {
                "method": method,
                "route": route,
                "path": scope["path"],
                "status": status,
                "latency_ms": round(seconds * 1000, 2),
                "request_id": request_id,
                **(model or {}),
            }
            access_log.info("%s %s %d", method, scope["path"], status, extra={"fields": fields})


async def _too_large(send: Send, limit: int, request_id: str) -> None:
    body = json.dumps(
        {
            "type": "urn:gan-serve:problem:limit-exceeded",
            "title": "limit exceeded",
            "status": 413,
            "detail": f"the request body is over {limit} bytes",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode("latin-1")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
