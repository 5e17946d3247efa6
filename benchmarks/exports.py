"""Export benchmark: a bulk export's images/s against the in-process engine, and its memory.

    python -m benchmarks.exports [--model mnist-cdcgan] [--images 1000000] [--tar-images 100000]

1. The in-process engine (ONNX Runtime on every core, no HTTP, latents drawn beforehand) at
   batch 1024: the most this machine's cores give. Measured before and after the export and
   averaged, as a shared machine drifts.
2. ``python -m app.exports``, the process a job worker runs, making ``--images`` images as npz
   shards into a temporary folder: wall time from start to the last shard recorded, peak RSS
   (the process's ru_maxrss), bytes written. Then the same for ``--tar-images`` images as
   WebDataset tar shards, whose PNG encoding is the cost npz does not pay.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.serving import ROOT, in_process, rate


def export(model: str, version: int, n: int, fmt: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"model": model, "version": version, "n": n, "format": fmt}))
        out = Path(tmp) / "export"
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.exports", "--spec", str(spec), "--out", str(out),
             "--models", str(ROOT / "models"), "--device", "cpu"],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)  # this process's own rusage
        seconds = time.perf_counter() - start
        assert os.waitstatus_to_exitcode(status) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["complete"] and manifest["images"] == n
        return {
            "images_per_s": n / seconds,
            "seconds": seconds,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "bytes_per_image": sum(s["bytes"] for s in manifest["shards"]) / n,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="mnist-cdcgan")
    p.add_argument("--version", type=int, default=3)
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--tar-images", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=5)
    args = p.parse_args()

    cpus = len(os.sched_getaffinity(0))
    engine = in_process(args.model, big_batch_threads=cpus)[1024]
    print(f"{args.model} v{args.version}, {cpus} CPUs")
    first = rate(engine, args.seconds)
    npz = export(args.model, args.version, args.images, "npz")
    last = rate(engine, args.seconds)
    tar = export(args.model, args.version, args.tar_images, "tar")
    best = (first + last) / 2
    print(f"in-process engine, batch 1024: {first:,.0f} and {last:,.0f} images/s")
    for name, n, run in (("npz", args.images, npz), ("tar", args.tar_images, tar)):
        print(
            f"export {n:,} images as {name}: {run['images_per_s']:,.0f} images/s"
            f" = {run['images_per_s'] / best:.2f} of the engine, {run['seconds']:.0f} s,"
            f" peak RSS {run['peak_rss_mb']:.0f} MB, {run['bytes_per_image']:.0f} bytes/image,"
            f" {run['cpu_s'] / run['seconds']:.2f} CPUs busy"
        )


if __name__ == "__main__":
    main()
