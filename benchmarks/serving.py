"""Serving benchmark: every figure is a ratio to a limit measured in the same run.

    python -m benchmarks.serving [--model mnist-cdcgan] [--seconds 4]

1. In-process engine throughput (ONNX Runtime, no HTTP) at batch 1, 64 and 1024.
2. HTTP /v1/sample npy at n=1024 against the in-process engine at batch 1024.
3. HTTP png and json at n=64 against npy at n=64: the cost of encoding. Each of these ratios
   is the median over 5 rounds of runs taken back to back; then the same at n=1 under 32
   concurrent clients (wrk, 3 rounds), where encoding is small and what it costs the event
   loop shows.
4. 32 and 64 concurrent n=1 clients (wrk, a C load generator, so the client does not starve
   the server of CPU; each request a new seed) against the same load on /healthz, with
   batching on and off. A shared machine's speed drifts by more than these ratios within a
   minute, so the loads are measured in interleaved rounds on two servers up at once
   (healthz, sample with batching on, healthz, sample with batching off, healthz): each
   sample run is divided by the mean of the healthz runs just before and after it, and each
   figure is the median of the rounds' ratios, printed with their range.

The servers run in their own processes; client and server CPU seconds are reported beside
each load so a reader can see who used the machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from app.serving.engine import load_engine
from app.settings import Settings
from core import latent
from core.repository import Repository

ROOT = Path(__file__).resolve().parents[1]


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Items per second of fn (which returns the items it made), after one warm-up call."""
    fn()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed


def in_process(model: str, **settings: object) -> dict[int, Callable[[], int]]:
    """Calls of the generator's engine at batch 1, 64 and 1024, each returning its batch size;
    the engine as the server configures it, or as ``settings`` (intra_op_threads, ...) say."""
    repo = Repository(ROOT / "models")
    version = repo.resolve(model, None)
    m = repo.verify(model, version)
    config = Settings(device="cpu", **settings)  # type: ignore[arg-type]
    engine = load_engine(repo.version_dir(model, version), m, "generator", config)
    calls: dict[int, Callable[[], int]] = {}
    for n in (1, 64, 1024):
        z = latent.latents(range(n), m.latent.dim, m.latent.prior)
        feeds = {"z": z, "label": np.arange(n, dtype=np.int64) % 10} if m.conditional else {"z": z}

        def once(feeds: dict[str, np.ndarray] = feeds, n: int = n) -> int:
            engine.run(feeds)
            return n

        calls[n] = once
    return calls


class Server:
    def __init__(self, **env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tempfile.mkdtemp()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "--port", str(self.port)],
            cwd=ROOT,
            # GAN_KEEP_ALIVE_S longer than any pause in a run: a keep-alive connection the
            # server closes just as a client reuses it is a client-side ReadError, not the
            # server failing. No response cache: runs repeat their seeds, and the figures are
            # of drawing samples, not of answering from memory.
            env={**os.environ, "GAN_LOG_LEVEL": "warning", "GAN_DATA_DIR": self.data,
                 "GAN_KEEP_ALIVE_S": "60", "GAN_RESPONSE_CACHE_BYTES": "0",
                 "GAN_REGISTRY_POLL_SECONDS": "0", "GAN_EMBEDDED_WORKER": "false", **env},
        )  # fmt: skip
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def pids(self) -> list[int]:
        """The server and every process under it: the forkserver and the engine processes."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
        return found

    def cpu_seconds(self, loop_only: bool = False) -> float:
        """CPU time of the server and its engine processes, or of the event loop's thread."""
        pid = self.proc.pid
        if loop_only:
            return _cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))
        return sum(_cpu_seconds(Path(f"/proc/{p}/stat")) for p in self.pids())

    def memory_mb(self) -> float:
        """PSS of the server and its engine processes: shared pages counted once in all."""
        total_kb = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
        return total_kb / 1024

    def batches(self) -> tuple[float, float]:
        """(rows, engine calls) of every generator batcher so far, from /metrics."""
        totals = {"sum": 0.0, "count": 0.0}
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            for key in totals:
                if line.startswith(f"gan_batch_size_{key}{{") and 'role="generator"' in line:
                    totals[key] += float(line.rsplit(" ", 1)[1])
        return totals["sum"], totals["count"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.data, ignore_errors=True)


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_rate(server: Server, body: dict, seconds: float) -> float:
    with httpx.Client(base_url=server.url, timeout=120) as client:

        def once() -> int:
            r = client.post("/v1/sample", json=body)
            r.raise_for_status()
            return int(body.get("n", 1))

        return rate(once, seconds)


def wrk(server: Server, path: str, body: dict | None, clients: int, seconds: float) -> dict:
    """One wrk run; with a body, a POST of it in which each request gets the next seed."""
    script = None
    if body is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        head, tail = json.dumps({**body, "seed": 0}).split('"seed": 0')
        script.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            "local seed = 0\nrequest = function()\n  seed = seed + 1\n"
            f'  return wrk.format(nil, nil, nil, [[{head}"seed": ]] .. seed .. [[{tail}]])\n'
            "end\n"
        )
        script.close()
    duration = max(1, round(seconds))  # wrk takes whole seconds
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{duration}s", "--latency", server.url + path]
    if script:
        cmd[1:1] = ["-s", script.name]
    before_server, before_loop = server.cpu_seconds(), server.cpu_seconds(loop_only=True)
    before_batches = server.batches()
    before_client = os.times()
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after_client = os.times()
    loop_s = server.cpu_seconds(loop_only=True) - before_loop
    (rows, calls), (rows_0, calls_0) = server.batches(), before_batches
    rows, calls = rows - rows_0, calls - calls_0
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    if script:
        os.unlink(script.name)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        "p50_ms": _percentile(text, 50),
        "p99_ms": _percentile(text, 99),
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "client_cpu_s": (after_client.children_user + after_client.children_system)
        - (before_client.children_user + before_client.children_system),
        "server_cpu_s": server.cpu_seconds() - before_server,
        "loop_us_per_request": loop_s / max(requests, 1) * 1e6,
        "rows_per_engine_call": rows / calls if calls else 0.0,
    }


def _percentile(wrk_output: str, p: int) -> float:
    """A latency percentile from wrk's --latency table, in ms."""
    found = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", wrk_output, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no {p}% latency in wrk's output:\n{wrk_output}")
    return float(found.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[found.group(2)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="mnist-cdcgan")
    p.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    s = args.seconds
    print(
        f"model {args.model}, {os.cpu_count()} CPUs,"
        f" {s:.0f} s per engine figure, {s / 2:.0f} s per run in rounds\n"
    )

    calls = in_process(args.model)
    engine = {n: rate(once, s) for n, once in calls.items()}
    print("in-process engine (ONNX Runtime, CPU, as the server configures it)")
    for n, ips in engine.items():
        print(f"  batch {n:5d}: {ips:10.0f} images/s   ({ips / engine[1024]:.2f} of batch 1024)")
    # The yardstick for big requests is the best engine configuration these cores allow, not
    # the server's own: every intra-op thread count, spinning on and off.
    configs = {
        f"{t} thread{'s' * (t > 1)}, spinning {spin}": in_process(
            args.model, intra_op_threads=t, ort_spinning=spin == "on"
        )[1024]
        for t in range(1, _cpus() + 1)
        for spin in ("on", "off")
    }
    batch_1024 = {name: rate(once, s) for name, once in configs.items()}
    best = max(batch_1024, key=batch_1024.__getitem__)
    print(
        "  batch  1024 by configuration: "
        + ", ".join(f"{name} {ips:.0f}" for name, ips in batch_1024.items())
        + f"; best: {best}"
    )

    # Each ratio from runs taken back to back, in rounds, for the drift n1_loads describes.
    server = Server()
    try:
        base = {"model": args.model, "seed": 1}

        def n64(fmt: str) -> float:
            return http_rate(server, {**base, "n": 64, "format": fmt}, s / 2)

        big = _rounds(
            {
                "engine": lambda: rate(configs[best], s / 2),
                "http": lambda: http_rate(server, {**base, "n": 1024, "format": "npy"}, s / 2),
            }
        )
        print(
            f"\nHTTP /v1/sample npy n=1024: {_median(big, 'http', 'engine')} x the best in-process"
            f" engine at batch 1024 ({best}; target >= 0.85),"
            f" {statistics.median(big['http']):.0f} images/s"
        )
        small = _rounds({f: functools.partial(n64, f) for f in ("npy", "png", "json")})
        print(
            f"HTTP n=64: npy {statistics.median(small['npy']):.0f} images/s;"
            f" png {_median(small, 'png', 'npy')} x npy; json {_median(small, 'json', 'npy')} x npy"
        )

        def n1(fmt: str) -> float:
            return wrk(server, "/v1/sample", {"model": args.model, "format": fmt}, 32, s / 2)["rps"]

        one = _rounds({f: functools.partial(n1, f) for f in ("npy", "png", "json")}, rounds=3)
        print(
            f"HTTP n=1, 32 clients: npy {statistics.median(one['npy']):.0f} req/s;"
            f" png {_median(one, 'png', 'npy')} x npy; json {_median(one, 'json', 'npy')} x npy"
        )
    finally:
        server.stop()
    n1_loads(args.model, s)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _rounds(measures: dict[str, Callable[[], float]], rounds: int = 5) -> dict[str, list[float]]:
    """Each measure once per round, in turn: figures of one round were taken seconds apart."""
    out: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            out[name].append(measure())
    return out


def _median(runs: dict[str, list[float]], top: str, bottom: str) -> str:
    """The median of the rounds' ratios top / bottom, with their range."""
    ratios = [t / b for t, b in zip(runs[top], runs[bottom], strict=True)]
    return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"


def n1_loads(model: str, seconds: float, rounds: int = 7) -> None:
    """Concurrent n=1 clients against /healthz, in interleaved rounds (module docstring)."""
    body = {"model": model, "format": "npy"}
    servers = {"on": Server(), "off": Server(GAN_BATCHING="false")}
    runs: dict[tuple[str, int], list[dict]] = {}
    floors: dict[tuple[str, int], list[float]] = {}
    try:
        for _ in range(rounds):
            for c in (32, 64):
                # /healthz before and after each sample run, and the mean of the two as its
                # floor: the machine's speed drifts within seconds, and a floor measured on one
                # side alone carries that drift into the ratio.
                healthz = [wrk(servers["on"], "/healthz", None, c, seconds / 2)]
                for mode, server in servers.items():
                    runs.setdefault((mode, c), []).append(
                        wrk(server, "/v1/sample", body, c, seconds / 2)
                    )
                    healthz.append(wrk(servers["on"], "/healthz", None, c, seconds / 2))
                    floors.setdefault((mode, c), []).append(
                        (healthz[-2]["rps"] + healthz[-1]["rps"]) / 2
                    )
                runs.setdefault(("healthz", c), []).extend(healthz)
    finally:
        for server in servers.values():
            server.stop()

    print(
        f"\nconcurrent n=1 clients (wrk, a new seed each request), {rounds} interleaved rounds:"
        " requests/s as a ratio to /healthz measured just before and after, median [range]"
        " (target >= 0.6)"
    )
    for c in (32, 64):
        f = _median_run(runs[("healthz", c)])
        print(
            f"  {c} clients /healthz: {f['rps']:.0f} req/s, p50 {f['p50_ms']:.1f} ms,"
            f" p99 {f['p99_ms']:.1f} ms, CPU s client {f['client_cpu_s']:.1f} / server"
            f" {f['server_cpu_s']:.1f}, event loop {f['loop_us_per_request']:.0f} us/request"
        )
        for mode in ("on", "off"):
            ratios = [
                r["rps"] / floor
                for r, floor in zip(runs[(mode, c)], floors[(mode, c)], strict=True)
            ]
            r = _median_run(runs[(mode, c)])
            print(
                f"  {c} clients sample, batching {mode:3s}: {statistics.median(ratios):.2f} x"
                f" healthz [{min(ratios):.2f}-{max(ratios):.2f}], {r['rps']:.0f} req/s,"
                f" p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms,"
                f" errors {sum(x['errors'] for x in runs[(mode, c)])}, CPU s client"
                f" {r['client_cpu_s']:.1f} / server {r['server_cpu_s']:.1f}, event loop"
                f" {r['loop_us_per_request']:.0f} us/request,"
                f" {r['rows_per_engine_call']:.1f} requests per engine call"
            )


def _median_run(runs: list[dict]) -> dict:
    """The run with the median requests/s, so that its figures belong together."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


if __name__ == "__main__":
    main()
