"""Running the service: uvicorn, configured from the settings, with limits on slow clients.

``python -m app`` (``make serve``, the images, ``gan-serve serve``) runs :func:`run`. uvicorn
alone bounds the idle time between requests and the connections it serves; the time a client
may take to send its request headers it leaves open, so :class:`GuardedProtocol` adds it. The
time a body may take is the ``RequestContext`` middleware's (app/middleware.py).
"""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import Settings


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request headers dawdle.

    The clock starts when the connection opens and again when a keep-alive connection's next
    request begins; headers must be complete within ``header_timeout_s``. A connection that
    trickles a header byte now and then, or opens and sends nothing, is closed.
    """

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def config(settings: Settings, host: str, port: int) -> uvicorn.Config:
    protocol = type(
        "GuardedProtocol", (GuardedProtocol,), {"header_timeout_s": settings.header_timeout_s}
    )
    return uvicorn.Config(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=int(settings.keep_alive_s) or 1,
        limit_concurrency=settings.max_connections,
        access_log=False,  # the app logs each request once, as JSON (app/middleware.py)
        log_level=settings.log_level,
    )


def run(host: str, port: int) -> None:
    uvicorn.Server(config(Settings(), host, port)).run()
