"""Debian's HAProxy on loopback, running deploy/haproxy/haproxy.cfg: the compose deployment's
own file, rendered for loopback as its header says (the one ``server-template`` line, which
finds replicas through Docker's DNS, becomes a ``server`` line per replica; LB_BIND and
LB_STATS set the address and a stats socket)."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port

CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
BINARY = Path("/usr/sbin/haproxy")  # make scale-test installs it (apt-get install haproxy)


def render(replicas: list[str]) -> str:
    text = CONFIG.read_text()
    (template,) = [line for line in text.splitlines() if line.strip().startswith("server-template")]
    servers = [f"    server api{i} {address}" for i, address in enumerate(replicas, 1)]
    return text.replace(template, "\n".join(servers))


class LoadBalancer:
    """HAProxy in the foreground on a free loopback port, its log in ``folder``."""

    def __init__(self, folder: Path, replicas: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stats_socket = folder / "haproxy.sock"
        config = folder / "haproxy.cfg"
        config.write_text(render(replicas))
        env = {
            **os.environ,
            "LB_BIND": f"127.0.0.1:{self.port}",
            "LB_STATS": str(self.stats_socket),
        }
        self.log = folder / "haproxy.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BINARY), "-db", "-f", str(config)], env=env, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stats(self) -> list[dict[str, str]]:
        """``show stat``: a row per frontend, server and backend (HAProxy's CSV)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.stats_socket))
            s.sendall(b"show stat\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode().lstrip("# ")
        return list(csv.DictReader(text.splitlines()))

    def row(self, name: str) -> dict[str, str]:
        return next(r for r in self.stats() if r["pxname"] == "api" and r["svname"] == name)

    def servers_up(self) -> list[str]:
        return [
            r["svname"]
            for r in self.stats()
            if r["pxname"] == "api" and r["svname"] != "BACKEND" and r["status"] == "UP"
        ]

    def wait_up(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.output()}")
            try:
                if len(self.servers_up()) == count:
                    assert httpx.get(f"{self.url}/lb/healthz").status_code == 200
                    return
            except OSError:  # the socket is not there yet
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{count} replicas never all up: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
