"""A/B of server settings: n=1 clients as a ratio to /healthz, servers up at once, in rounds.

    python -m benchmarks.ab '{"a": {}, "b": {"GAN_GIL_SWITCH_INTERVAL_US": "5000"}}' [--rounds 7]

Each variant is a server started with those GAN_* variables. Every round runs, for 32 and 64
wrk clients and for each server in turn: /healthz, /v1/sample n=1 npy (a new seed each
request), /healthz; a sample run is divided by the mean of the two /healthz runs beside it,
on the same server. Printed per variant: the median ratio over the rounds with its range,
requests/s, and the event loop's CPU per request. A setting is kept only if it wins by well
over this machine's noise (10% or more, STYLE.md).
"""

from __future__ import annotations

import argparse
import json
import statistics

from benchmarks.serving import Server, wrk


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("variants", type=json.loads, help='{"name": {"GAN_...": "value"}, ...}')
    p.add_argument("--model", default="mnist-cdcgan")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=1.0, help="per wrk run")
    args = p.parse_args()
    body = {"model": args.model, "format": "npy"}
    servers = {name: Server(**env) for name, env in args.variants.items()}
    runs: dict[tuple[str, int], list[tuple[float, dict]]] = {}
    try:
        for _ in range(args.rounds):
            for clients in (32, 64):
                for name, server in servers.items():
                    before = wrk(server, "/healthz", None, clients, args.seconds)
                    sample = wrk(server, "/v1/sample", body, clients, args.seconds)
                    after = wrk(server, "/healthz", None, clients, args.seconds)
                    ratio = sample["rps"] / ((before["rps"] + after["rps"]) / 2)
                    runs.setdefault((name, clients), []).append((ratio, sample))
    finally:
        for server in servers.values():
            server.stop()
    print(f"{args.rounds} interleaved rounds, n=1 npy as a ratio to /healthz, median [range]")
    for (name, clients), results in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ratios = [r for r, _ in results]
        rps = statistics.median(s["rps"] for _, s in results)
        loop = statistics.median(s["loop_us_per_request"] for _, s in results)
        print(
            f"  {clients} clients {name}: {statistics.median(ratios):.2f}"
            f" [{min(ratios):.2f}-{max(ratios):.2f}] x healthz, {rps:.0f} req/s,"
            f" event loop {loop:.0f} us/request"
        )


if __name__ == "__main__":
    main()
