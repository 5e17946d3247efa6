"""The export process: ``python -m app.exports --spec spec.json --out DIR ...``.

What a job worker runs for an export job, speaking the job protocol of ``training.events``
(events on stdout and in ``--stats``; exit 0 complete, 3 stopped by SIGTERM with every finished
shard kept); also a way to export on this machine without a server. It never imports torch on
the ONNX backend.

    python -m app.exports --spec spec.json --out exports/digits --models models
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from app.exports.manifest import ExportFiles, write_header
from app.exports.plan import ExportSpec, check_for_model
from app.exports.run import run_export
from app.serving.runtime import Engines
from app.settings import Settings
from training.events import EXIT_STOPPED, Event, encode


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    spec = ExportSpec.model_validate_json(Path(args.spec).read_text())
    settings = Settings(
        models_dir=args.base_models or args.models,
        publish_dir=args.models if args.base_models else None,
        device=args.device,
        backend=args.backend,
    )
    repo = settings.repository()
    manifest = repo.verify(spec.model, spec.version)
    if (why := check_for_model(spec, manifest.num_classes)) is not None:
        raise SystemExit(f"error: {why}")
    engines = Engines.load(repo.version_dir(spec.model, spec.version), manifest, settings)
    files = ExportFiles(Path(args.out))
    if not files.header.exists():  # run by hand, not by a job: nobody wrote it
        write_header(files, spec, manifest)
    stop = threading.Event()
    parent = os.getppid()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_with_parent:  # a worker killed outright must not leave its export running
        threading.Thread(target=_watch_parent, args=(parent, stop), daemon=True).start()

    if args.stats:
        Path(args.stats).parent.mkdir(parents=True, exist_ok=True)

    def emit(event: Event) -> None:
        line = encode({"time": time.time(), **event})
        if args.stats:
            with open(args.stats, "a") as f:
                f.write(line + "\n")
        print(line, flush=True)

    return 0 if run_export(spec, files, engines, stop=stop, emit=emit) else EXIT_STOPPED


def _watch_parent(parent: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.exports", description=__doc__)
    p.add_argument("--spec", required=True, help="the export (app.exports.plan.ExportSpec) JSON")
    p.add_argument("--out", required=True, help="the export's folder; resumes what is there")
    p.add_argument("--models", required=True, help="the repository holding the version")
    p.add_argument("--base-models", help="a read-only repository under --models")
    p.add_argument("--stats", help="append every event here too (the job's stats.jsonl)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--backend", choices=("auto", "onnx", "torchscript"), default="auto")
    p.add_argument("--exit-with-parent", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(main())
