"""Export benchmark: a bulk export's images/s against the in-process engine, and its memory.

    python -m benchmarks.exports [--model mnist-cdcgan] [--images 1000000] [--tar-images 100000]

1. The in-process engine (ONNX Runtime, no HTTP, latents drawn beforehand) at batch 1024, in
   its best configuration (one intra-op thread or one per CPU): the most this machine's cores
   give. Measured before and after the export and averaged, as a shared machine drifts.
2. ``python -m app.exports``, the process a job worker runs, making ``--images`` images as npz
   shards into a temporary folder: wall time from start to the last shard recorded, peak RSS
   (the process's ru_maxrss) and its resident memory a tenth of the way in and at the end (the
   same: memory does not grow with n), bytes written. Then the same for ``--tar-images`` images as
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
        rss = []  # resident MB, twice a second: flat memory is flat over the whole run
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # this process's own rusage
            if pid:
                break
            lines = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            rss += [int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS")]
            time.sleep(0.5)
        seconds = time.perf_counter() - start
        assert os.waitstatus_to_exitcode(status) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["complete"] and manifest["images"] == n
        return {
            "images_per_s": n / seconds,
            "seconds": seconds,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            # Resident at a tenth of the run and at the end: what n adds to memory.
            "rss_early_mb": rss[len(rss) // 10] if rss else 0.0,
            "rss_late_mb": rss[-1] if rss else 0.0,
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
    engines = {
        threads: in_process(args.model, intra_op_threads=threads, big_batch_threads=threads)[1024]
        for threads in sorted({1, cpus})
    }
    print(f"{args.model} v{args.version}, {cpus} CPUs")

    def engine_rate() -> float:  # the best configuration: one thread can beat every core
        return max(rate(engine, args.seconds / 2) for engine in engines.values())

    first = engine_rate()
    npz = export(args.model, args.version, args.images, "npz")
    last = engine_rate()
    tar = export(args.model, args.version, args.tar_images, "tar")
    best = (first + last) / 2
    print(f"best in-process engine, batch 1024: {first:,.0f} and {last:,.0f} images/s")
    for name, n, run in (("npz", args.images, npz), ("tar", args.tar_images, tar)):
        print(
            f"export {n:,} images as {name}: {run['images_per_s']:,.0f} images/s"
            f" = {run['images_per_s'] / best:.2f} of the engine, {run['seconds']:.0f} s,"
            f" peak RSS {run['peak_rss_mb']:.0f} MB (resident {run['rss_early_mb']:.0f} MB at a"
            f" tenth, {run['rss_late_mb']:.0f} MB at the end), {run['bytes_per_image']:.0f}"
            " bytes/image,"
            f" {run['cpu_s'] / run['seconds']:.2f} CPUs busy"
        )


if __name__ == "__main__":
    main()
