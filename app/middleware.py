"""Pure ASGI middleware: request ids, access logs, metrics and the limits on request bodies.

Written against ASGI directly (not BaseHTTPMiddleware) so streaming bodies pass through
untouched and the limits apply before any handler parses a byte: the size, the time a body
may take to arrive, and the number of values a JSON body holds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics

access_log = logging.getLogger("app.access")
MAX_LOGGED_PATH = 256


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body: int,
        max_body_by_path: dict[str, int] | None = None,
        body_timeout_s: float,
        max_json_values: int,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.max_body_by_path = max_body_by_path or {}
        self.body_timeout_s = body_timeout_s
        self.max_json_values = max_json_values
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
        # JSON parsers hold the GIL for the whole document, in a worker thread too: 16 MB of
        # numbers stalled every request for 0.2 to 0.7 s. Commas, counted as the body arrives,
        # bound the values (and so the parse) before any parser sees a byte.
        json_body = headers.get(b"content-type", b"").startswith(b"application/json")
        values = 0
        body_done = False
        deadline = time.monotonic() + self.body_timeout_s
        model: dict[str, str] = {}

        async def limited_receive() -> Message:
            nonlocal received, values, body_done
            if body_done:  # a streaming response waiting to hear of a disconnect
                return await receive()
            try:  # a body trickled in byte by byte holds a connection: it gets a deadline
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body took over {self.body_timeout_s:g} s to arrive"
                ) from None
            body_done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > max_body:  # chunked bodies carry no Content-Length
                raise HTTPException(413, f"the request body is over {max_body} bytes")
            if json_body:
                values += chunk.count(b",")
                if values >= self.max_json_values:
                    raise HTTPException(
                        413,
                        f"the JSON body holds over {self.max_json_values} values; send large"
                        " arrays as npy (application/x-npy) or binary tensors",
                    )
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
        except ClientDisconnect:
            # Gone mid-upload: nobody to answer and nothing failed here. 499, as nginx logs it,
            # keeps it out of the 5xx an operator is alerted on.
            status = 499
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
            # A client chooses the path: a 5,000-character one is logged by its start.
            path = scope["path"][:MAX_LOGGED_PATH]
            fields: dict[str, Any] = {
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "latency_ms": round(seconds * 1000, 2),
                "request_id": request_id,
                **(model or {}),
            }
            access_log.info("%s %s %d", method, path, status, extra={"fields": fields})


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


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with refused preflights as problem+json like every other 4xx."""

    def preflight_response(self, request_headers: Any) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        detail = bytes(response.body).decode()  # "Disallowed CORS origin, method"
        body = json.dumps(
            {
                "type": "urn:gan-serve:problem:cors-refused",
                "title": "cors refused",
                "status": 400,
                "detail": f"{detail}: the preflight asks for what this server does not allow",
            }
        ).encode()
        headers = {k: v for k, v in response.headers.items() if k != "content-length"}
        headers["content-type"] = "application/problem+json"
        return Response(body, 400, headers=headers)
