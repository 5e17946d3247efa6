"""A/B of servers: n=1 clients against the same /healthz floor, servers up at once, in rounds.

    python -m benchmarks.ab '{"a": {}, "b": {"GAN_GIL_SWITCH_INTERVAL_US": "5000"}}' [--rounds 7]

Each variant is a server started with those environment variables (``GAN_*`` settings, or
``PYTHONPATH`` pointing at another checkout to compare code). Every round runs, for 32 and 64
wrk clients: /healthz on the first server, then each variant's /v1/sample n=1 npy (a new seed
each request) followed by /healthz again, so that each sample run is divided by the mean of the
/healthz runs just before and after it, as ``make bench`` does. Printed: each variant's median
ratio with its range, and each variant's requests/s over the first one's, round by round. A
setting is kept only if it wins by well over this machine's noise (10% or more, STYLE.md).
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
    p.add_argument("--seconds", type=float, default=2.0, help="per wrk run")
    args = p.parse_args()
    body = {"model": args.model, "format": "npy"}
    servers = {name: Server(**env) for name, env in args.variants.items()}
    floor = next(iter(servers.values()))
    ratios: dict[tuple[str, int], list[float]] = {}
    rps: dict[tuple[str, int], list[float]] = {}
    try:
        for _ in range(args.rounds):
            for clients in (32, 64):
                healthz = [wrk(floor, "/healthz", None, clients, args.seconds)["rps"]]
                for name, server in servers.items():
                    sample = wrk(server, "/v1/sample", body, clients, args.seconds)["rps"]
                    healthz.append(wrk(floor, "/healthz", None, clients, args.seconds)["rps"])
                    ratios.setdefault((name, clients), []).append(
                        sample / ((healthz[-2] + healthz[-1]) / 2)
                    )
                    rps.setdefault((name, clients), []).append(sample)
    finally:
        for server in servers.values():
            server.stop()
    first = next(iter(servers))
    print(f"{args.rounds} interleaved rounds, n=1 npy; median [range]")
    for clients in (32, 64):
        for name in servers:
            r, ips = ratios[(name, clients)], rps[(name, clients)]
            over = [a / b for a, b in zip(ips, rps[(first, clients)], strict=True)]
            median = statistics.median(r)
            print(
                f"  {clients} clients {name}: {median:.2f} [{min(r):.2f}-{max(r):.2f}]"
                f" x healthz, {statistics.median(ips):.0f} req/s, x{statistics.median(over):.2f}"
                f" [{min(over):.2f}-{max(over):.2f}] the requests/s of {first}"
            )


if __name__ == "__main__":
    main()
