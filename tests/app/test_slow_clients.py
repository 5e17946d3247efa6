"""Slow and vanishing clients against a real server (python -m app on loopback).

Each limit is a setting (README, Reliability): a client that trickles its headers or body, or
opens connections and sends nothing, is cut off; one that disconnects mid-upload is no server
error. Timeouts are set short here so that the tests wait seconds, not minutes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server

LIMITS = {
    "GAN_HEADER_TIMEOUT_S": "1",
    "GAN_BODY_TIMEOUT_S": "2",
    "GAN_KEEP_ALIVE_S": "1",
    "GAN_MAX_CONNECTIONS": "20",
}


@pytest.fixture
def server(start_server: Callable[..., Server], models_dir: Path) -> Server:
    return start_server(GAN_MODELS_DIR=str(models_dir), **LIMITS)


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass  # a 408 answer may come first; the close is what counts
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _sample_ok(server: Server) -> None:
    r = httpx.post(f"{server.url}/v1/sample", json={"model": "tiny-gan", "seed": 3}, timeout=30)
    assert r.status_code == 200, r.text


def test_headers_trickled_byte_by_byte_are_cut_off(server: Server) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        for byte in request:  # one byte every 0.2 s: each arrives well within any idle timer
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
            if time.monotonic() - started > 15:
                break
        assert _closed_within(sock, 5), "the server kept a connection whose headers trickled"
        assert time.monotonic() - started < 15
    _sample_ok(server)


def test_connections_that_send_nothing_are_closed(server: Server) -> None:
    socks = [_connect(server) for _ in range(30)]  # past max_connections too
    try:
        assert all(_closed_within(s, 10) for s in socks)
    finally:
        for s in socks:
            s.close()
    _sample_ok(server)


def test_past_max_connections_new_requests_get_503_not_a_hang(server: Server) -> None:
    idle = [_connect(server) for _ in range(int(LIMITS["GAN_MAX_CONNECTIONS"]))]
    try:
        time.sleep(0.2)
        r = httpx.get(f"{server.url}/healthz", timeout=10)
        assert r.status_code == 503
    finally:
        for s in idle:
            s.close()
    time.sleep(0.5)
    _sample_ok(server)


def test_a_body_that_trickles_past_the_deadline_is_408(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /v1/sample HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        answer = b""
        sock.settimeout(1)
        started = time.monotonic()
        while time.monotonic() - started < 15 and b"\r\n\r\n" not in answer:
            try:
                sock.sendall(b" ")
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"application/problem+json" in answer
    _sample_ok(server)


def test_a_client_gone_mid_upload_is_no_server_error(server: Server) -> None:
    for _ in range(3):
        with _connect(server) as sock:
            sock.sendall(
                b"POST /v1/discriminate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
                b'Content-Disposition: form-data; name="images"; filename="x.png"\r\n\r\n'
                + b"x"
                * 5000
            )
            time.sleep(0.3)
    time.sleep(0.5)
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    lines = [x for x in metrics.splitlines() if x.startswith("gan_http_requests_total{")]
    discriminate = [x for x in lines if "/v1/discriminate" in x]
    assert any('status="499"' in x for x in discriminate), discriminate
    assert not any('status="5' in x for x in discriminate), discriminate
    log = server.output()
    assert "Traceback" not in log and "unhandled" not in log, log[-2000:]
    _sample_ok(server)
