"""Load test: 64 concurrent clients send a fixed mix of requests to a server on loopback.

    python -m benchmarks.load [--model mnist-cdcgan] [--models-dir models]
                              [--requests 3000] [--clients 64] [--warmup 640]

The server runs in its own process on 127.0.0.1 (benchmarks.serving.Server); there is no
option to aim this at another host. Request i is MIX[i % len(MIX)] with seed i, so every run
sends the same requests: sample (n=1 png, n=1 npy, n=16 npy, n=16 png), discriminate (16
images, npy) and interpolate (16 steps, npy). A warm-up pass of the same mix comes first, so
that lazy allocations (ONNX Runtime arenas, thread pools, caches) are made before the server's
memory is read.

It passes (exit 0) when every response is a 200, or a 503 with Retry-After (the documented
backpressure of a full batch queue), and the server's memory after the run is at most
MEMORY_RATIO x its memory after warm-up + MEMORY_SLACK_MB. Memory is the PSS of the server and its
engine processes together (shared pages counted once). It prints throughput, p50/p99 latency
per kind of request, status counts, memory and CPU seconds of server and client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.serving import Server

MEMORY_RATIO = 1.25
MEMORY_SLACK_MB = 20.0
NPY = "application/x-npy"


@dataclass(frozen=True)
class Kind:
    name: str
    images: int  # images made or scored per request
    media_type: str  # what a 200 must carry
    request: Callable[[int], dict[str, Any]]  # seed -> httpx.AsyncClient.request kwargs


@dataclass(frozen=True)
class Result:
    kind: str
    status: int | str  # a transport failure is its exception's name
    seconds: float


def mix(model: str, num_classes: int, images: bytes, labels: str | None) -> list[Kind]:
    """The request mix: a cycle of 10, weighted towards the small requests clients send most."""

    def sample(n: int, fmt: str) -> Callable[[int], dict[str, Any]]:
        return lambda seed: {
            "method": "POST",
            "url": "/v1/sample",
            "json": {"model": model, "seed": seed, "n": n, "format": fmt},
        }

    def discriminate(seed: int) -> dict[str, Any]:
        params = {"model": model, **({"labels": labels} if labels else {})}
        return {
            "method": "POST",
            "url": "/v1/discriminate",
            "params": params,
            "content": images,
            "headers": {"content-type": NPY},
        }

    def interpolate(seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "from": {"seed": seed},
            "to": {"seed": seed + 1},
            "steps": 16,
            "format": "npy",
        }
        if num_classes:
            body["label"] = seed % num_classes
        return {"method": "POST", "url": "/v1/interpolate", "json": body}

    one_png = Kind("sample n=1 png", 1, "image/png", sample(1, "png"))
    one_npy = Kind("sample n=1 npy", 1, NPY, sample(1, "npy"))
    many_npy = Kind("sample n=16 npy", 16, NPY, sample(16, "npy"))
    many_png = Kind("sample n=16 png", 16, "image/png", sample(16, "png"))
    scores = Kind("discriminate 16 npy", 16, "application/json", discriminate)
    walk = Kind("interpolate 16 npy", 16, NPY, interpolate)
    return [one_png, one_npy, many_npy, scores, walk, one_png, many_png, one_png, scores, walk]


async def run(url: str, kinds: list[Kind], first: int, count: int, clients: int) -> list[Result]:
    """Requests first..first+count-1, ``clients`` at a time, each client one request at once."""
    results: list[Result] = []
    todo = iter(range(first, first + count))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:

        async def client() -> None:
            for i in todo:  # one shared iterator: the clients take turns drawing from it
                kind = kinds[i % len(kinds)]
                start = time.perf_counter()
                try:
                    r = await http.request(**kind.request(i))
                    status: int | str = r.status_code
                    if status == 200 and r.headers["content-type"] != kind.media_type:
                        status = f"200 as {r.headers['content-type']}"
                    elif status == 503 and "retry-after" not in r.headers:
                        status = "503 without Retry-After"
                except httpx.TransportError as e:
                    status = type(e).__name__
                results.append(Result(kind.name, status, time.perf_counter() - start))

        await asyncio.gather(*(client() for _ in range(clients)))
    return results


def client_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def prepare(url: str, model: str) -> tuple[list[Kind], int]:
    """The mix for this model: its classes, and 16 of its own images to discriminate."""
    with httpx.Client(base_url=url, timeout=60) as http:
        detail = http.get(f"/v1/models/{model}")
        detail.raise_for_status()
        info = detail.json()
        version = info["serving_version"]
        manifest = next(m for m in info["versions"] if m["version"] == version)
        r = http.post("/v1/sample", json={"model": model, "seed": 0, "n": 16, "format": "npy"})
        r.raise_for_status()
    kinds = mix(model, manifest["num_classes"], r.content, r.headers.get("x-labels"))
    return kinds, version


def report(results: list[Result], kinds: list[Kind], seconds: float) -> bool:
    """Print the figures; True when every status is 200 or a documented 503."""
    images = {k.name: k.images for k in kinds}
    print(f"{'request':22s} {'count':>6s} {'p50 ms':>8s} {'p99 ms':>8s}  statuses")
    for name in dict.fromkeys(k.name for k in kinds):
        mine = [r for r in results if r.kind == name]
        ms = np.array([r.seconds for r in mine]) * 1000
        statuses = Counter(str(r.status) for r in mine)
        print(
            f"{name:22s} {len(mine):6d} {np.percentile(ms, 50):8.1f} {np.percentile(ms, 99):8.1f}"
            f"  {dict(sorted(statuses.items()))}"
        )
    ms = np.array([r.seconds for r in results]) * 1000
    statuses = Counter(str(r.status) for r in results)
    done = sum(images[r.kind] for r in results if r.status == 200)
    print(
        f"{'all':22s} {len(results):6d} {np.percentile(ms, 50):8.1f} {np.percentile(ms, 99):8.1f}"
        f"  {dict(sorted(statuses.items()))}"
    )
    print(
        f"throughput: {len(results) / seconds:.0f} requests/s, {done / seconds:.0f} images/s"
        f" made or scored ({len(results)} requests in {seconds:.1f} s)"
    )
    bad = {s: n for s, n in statuses.items() if s not in ("200", "503")}
    if bad:
        print(f"FAIL: responses other than 200 and 503: {bad}")
    return not bad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="mnist-cdcgan")
    p.add_argument("--models-dir", type=Path, default=None, help="default: the committed models")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--warmup", type=int, default=640, help="requests before memory is read")
    args = p.parse_args()

    env = {} if args.models_dir is None else {"GAN_MODELS_DIR": str(args.models_dir.resolve())}
    server = Server(**env)
    try:
        kinds, version = prepare(server.url, args.model)
        print(
            f"load: {args.model} v{version}, {args.requests} requests from {args.clients}"
            f" clients after {args.warmup} warm-up requests; {len(os.sched_getaffinity(0))} CPUs"
            " shared by client and server\n"
        )
        cold = server.memory_mb()
        warm = asyncio.run(run(server.url, kinds, 0, args.warmup, args.clients))
        before = server.memory_mb()
        cpu_server, cpu_client = server.cpu_seconds(), client_cpu_seconds()
        start = time.perf_counter()
        results = asyncio.run(run(server.url, kinds, args.warmup, args.requests, args.clients))
        seconds = time.perf_counter() - start
        cpu_server = server.cpu_seconds() - cpu_server
        cpu_client = client_cpu_seconds() - cpu_client
        after = server.memory_mb()
        alive = server.proc.poll() is None
    finally:
        server.stop()

    ok = report(results, kinds, seconds)
    warm_bad = Counter(str(r.status) for r in warm if r.status not in (200, 503))
    if warm_bad:
        print(f"FAIL: during warm-up, responses other than 200 and 503: {dict(warm_bad)}")
        ok = False
    limit = before * MEMORY_RATIO + MEMORY_SLACK_MB
    flat = after <= limit
    print(
        f"server memory (PSS, engine processes included): {cold:.1f} MB once started,"
        f" {before:.1f} MB after warm-up, {after:.1f} MB after the run"
        f" (limit {limit:.1f} MB = {MEMORY_RATIO} x after warm-up +"
        f" {MEMORY_SLACK_MB:.0f} MB): {'flat' if flat else 'FAIL: grew'}"
    )
    print(f"CPU seconds during the run: server {cpu_server:.1f}, client {cpu_client:.1f}")
    if not alive:
        print("FAIL: the server exited during the run")
    ok = ok and flat and alive
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
