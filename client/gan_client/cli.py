"""The ``gan-serve`` command: run the server, or use one from the shell.

    gan-serve serve --port 8000
    gan-serve --url http://127.0.0.1:8000 sample --n 64 --seed 1 --label 3 --out threes.png
    gan-serve discriminate threes.npy --labels 3
    gan-serve interpolate --from-seed 1 --to-seed 2 --steps 8 --out walk.png
    gan-serve models
    gan-serve alias mnist-cdcgan production 3
    gan-serve datasets upload pets.zip
    gan-serve jobs submit --model mnist-cdcgan --set max_steps=2000 --promote if_better
    gan-serve jobs watch 4be1c0ffee
    gan-serve exports start --model mnist-cdcgan --n 1000000 --out digits

``--url`` defaults to ``$GAN_URL`` and ``--api-key`` to ``$GAN_API_KEY`` (the admin key the
server is configured with). An error answer prints its problem detail and exits 2;
``jobs watch`` exits 0 when the job succeeded and 1 when it failed or was cancelled.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gan_client.calls import Images, Labels
from gan_client.client import GanClient
from gan_client.errors import GanError

EXIT_ERROR = 2
BAR_WIDTH = 30


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except GanError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-serve",
        description="Serve GAN models, or sample, score and retrain through a running server.",
    )
    p.add_argument(
        "--url",
        default=os.environ.get("GAN_URL", "http://127.0.0.1:8000"),
        help="the server (default $GAN_URL or http://127.0.0.1:8000)",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("GAN_API_KEY"),
        help="admin key for jobs, aliases and dataset uploads (default $GAN_API_KEY)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the HTTP server (settings from GAN_* variables)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=_serve)

    sa = sub.add_parser("sample", help="draw images into a PNG grid or an .npy array")
    sa.add_argument("--n", type=int, default=64)
    sa.add_argument("--seed", type=int, default=1, help="image i uses seed + i")
    sa.add_argument("--label", type=int, help="conditional models: one class for every image")
    sa.add_argument("--model", help="default: the server's default model")
    sa.add_argument("--version", help="a number or an alias (default production)")
    sa.add_argument("--truncation", type=float)
    sa.add_argument("--cols", type=int, help="PNG grid columns")
    sa.add_argument("--out", type=Path, required=True, help="grid.png, or images.npy (uint8)")
    sa.set_defaults(func=_sample)

    d = sub.add_parser("discriminate", help="score images with a model's discriminator")
    d.add_argument(
        "files", nargs="+", type=Path, help="uint8 [N, H, W, C] .npy files, or image files"
    )
    d.add_argument(
        "--labels",
        type=_int_list,
        help="conditional models: one label for every image, or one per image (3,1,4)",
    )
    d.add_argument("--model", help="default: the server's default model")
    d.add_argument("--version", help="a number or an alias (default production)")
    d.add_argument("--resize", action="store_true", help="scale image files to the model's size")
    d.set_defaults(func=_discriminate)

    i = sub.add_parser("interpolate", help="a walk between two seeds, as a PNG strip or .npy")
    i.add_argument("--from-seed", type=int, required=True)
    i.add_argument("--to-seed", type=int, required=True)
    i.add_argument("--steps", type=int, default=8, help="frames, both ends included")
    i.add_argument("--method", choices=["slerp", "lerp"], default="slerp")
    i.add_argument("--label", type=int, help="conditional models: the class of every frame")
    i.add_argument("--model", help="default: the server's default model")
    i.add_argument("--version", help="a number or an alias (default production)")
    i.add_argument("--out", type=Path, required=True, help="strip.png, or frames.npy (uint8)")
    i.set_defaults(func=_interpolate)

    m = sub.add_parser("models", help="list the served models")
    m.set_defaults(func=_models)

    a = sub.add_parser("alias", help="point an alias at a version (admin): promote, roll back")
    a.add_argument("model")
    a.add_argument("alias", help="production is what requests naming no version get")
    a.add_argument("version", type=int)
    a.set_defaults(func=_alias)

    datasets = sub.add_parser("datasets", help="training data").add_subparsers(
        dest="datasets_command", required=True
    )
    du = datasets.add_parser("upload", help="store a dataset (admin); prints its id")
    du.add_argument("path", type=Path, help="a .zip of <class>/<image> files, an .npz, or a folder")
    du.add_argument("--name", help="default: the file's name")
    du.set_defaults(func=_upload)
    dl = datasets.add_parser("list", help="uploaded datasets, newest first")
    dl.set_defaults(func=_datasets)

    jobs = sub.add_parser("jobs", help="retraining jobs").add_subparsers(
        dest="jobs_command", required=True
    )
    js = jobs.add_parser("submit", help="queue a training job (admin); prints its id")
    js.add_argument("--model", required=True, help="the model to publish a new version of")
    js.add_argument("--preset", default="cdcgan", help="a config in training/configs")
    js.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (dotted for nested: optimizer.lr_g=0.001)",
    )
    js.add_argument("--base-version", type=int, help="fine-tune from this version")
    js.add_argument("--dataset", help="an uploaded dataset id (default: the built-in digits)")
    js.add_argument("--promote", choices=["never", "if_better", "always"], default="if_better")
    js.add_argument(
        "--promote-on", metavar="SCORES", help="what if_better compares: fid,cas (the default)"
    )
    js.set_defaults(func=_submit)

    jl = jobs.add_parser("list", help="jobs, newest first")
    jl.add_argument("--state", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    jl.add_argument("--limit", type=int, default=50)
    jl.set_defaults(func=_list)

    jw = jobs.add_parser("watch", help="a progress bar, from the job's events, until it ends")
    jw.add_argument("id")
    jw.add_argument(
        "--poll", type=float, default=1.0, help="seconds between polls (servers without events)"
    )
    jw.set_defaults(func=_watch)

    jg = jobs.add_parser("log", help="the training process's output")
    jg.add_argument("id")
    jg.set_defaults(func=_log)

    jc = jobs.add_parser("cancel", help="cancel a job (admin)")
    jc.add_argument("id")
    jc.set_defaults(func=_cancel)

    jr = jobs.add_parser("resume", help="queue a cancelled or failed job again (admin)")
    jr.add_argument("id")
    jr.set_defaults(func=_resume)

    exports = sub.add_parser("exports", help="bulk exports of labelled images").add_subparsers(
        dest="exports_command", required=True
    )
    es = exports.add_parser("start", help="queue an export (admin); prints its id")
    es.add_argument("--model", required=True)
    es.add_argument("--n", type=int, required=True, help="images")
    es.add_argument("--version", help="a number or an alias, pinned now (default production)")
    es.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    labels = es.add_mutually_exclusive_group()
    labels.add_argument("--label", type=int, help="one class for every image")
    labels.add_argument("--label-mix", type=_float_list, help="a weight per class: 1,1,2,...")
    es.add_argument("--truncation", type=float)
    es.add_argument("--format", choices=["npz", "tar"], default="npz")
    es.add_argument("--shard-size", type=int, help="images per shard (default 10000)")
    es.add_argument("--out", type=Path, help="then download it here as it is made")
    es.set_defaults(func=_export)
    ed = exports.add_parser("download", help="fetch an export's shards; resumes where it stopped")
    ed.add_argument("id")
    ed.add_argument("out", type=Path)
    ed.add_argument("--no-wait", action="store_true", help="only the shards finished now")
    ed.set_defaults(func=_download)
    return p


def _client(args: argparse.Namespace) -> GanClient:
    return GanClient(args.url, api_key=args.api_key)


def _serve(args: argparse.Namespace) -> int:
    # The server is another distribution (gan-serve); the client never imports it, so this
    # command hands over to the server's own launcher (app/server.py: its settings, its one
    # JSON access log) in the same interpreter, where the server is installed.
    cmd = [sys.executable, "-m", "app", "--host", args.host, "--port", str(args.port)]
    try:
        os.execv(sys.executable, cmd)
    except OSError as e:
        print(f"error: cannot start the server: {e}", file=sys.stderr)
    return EXIT_ERROR


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML would read it, the syntax of ``python -m training --set``;
    a bare word stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _sample(args: argparse.Namespace) -> int:
    out: Path = args.out
    with _client(args) as gan:
        request = {
            "n": args.n,
            "seed": args.seed,
            "labels": args.label,
            "truncation": args.truncation,
            "model": args.model,
            "version": args.version,
        }
        if out.suffix == ".npy":
            images, _ = gan.sample(**request)
            np.save(out, images, allow_pickle=False)
        else:
            out.write_bytes(gan.sample_png(**request, cols=args.cols))
    print(f"wrote {args.n} images to {out}", file=sys.stderr)
    return 0


def _discriminate(args: argparse.Namespace) -> int:
    files: list[Path] = args.files
    arrays = [f for f in files if f.suffix == ".npy"]
    if arrays and len(arrays) != len(files):
        print("error: give .npy files or image files, not both", file=sys.stderr)
        return EXIT_ERROR
    images: Images
    if arrays:
        loaded = [np.load(f, allow_pickle=False) for f in arrays]
        images = np.concatenate(loaded)
        names = [f"{f}[{i}]" for f, a in zip(arrays, loaded, strict=True) for i in range(len(a))]
    else:
        images = [f.read_bytes() for f in files]
        names = [str(f) for f in files]
    labels: Labels = args.labels
    if args.labels is not None and len(args.labels) == 1:
        labels = args.labels[0]  # one label: the client gives it to every image
    with _client(args) as gan:
        scores = gan.discriminate(images, labels, args.model, args.version, args.resize)
    rows = [["image", "probability_real", "logit"]]
    rows += [
        [name, f"{p:.6f}", f"{logit:.4f}"] for name, (p, logit) in zip(names, scores, strict=True)
    ]
    _table(rows)
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated integers") from None


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated numbers") from None


def _interpolate(args: argparse.Namespace) -> int:
    out: Path = args.out
    with _client(args) as gan:
        request = {
            "from_seed": args.from_seed,
            "to_seed": args.to_seed,
            "steps": args.steps,
            "method": args.method,
            "label": args.label,
            "model": args.model,
            "version": args.version,
        }
        if out.suffix == ".npy":
            np.save(out, gan.interpolate(**request), allow_pickle=False)
        else:
            out.write_bytes(gan.interpolate_png(**request))
    print(f"wrote {args.steps} frames to {out}", file=sys.stderr)
    return 0


def _models(args: argparse.Namespace) -> int:
    with _client(args) as gan:
        models = gan.models()
    rows = [["name", "serving", "versions", "conditional", "architecture"]]
    for m in models:
        conditional = "-" if m["conditional"] is None else ("yes" if m["conditional"] else "no")
        rows.append(
            [
                m["name"],
                str(m["serving_version"] or "-"),
                ",".join(map(str, m["versions"])),
                conditional,
                m["architecture"] or "-",
            ]
        )
    _table(rows)
    return 0


def _alias(args: argparse.Namespace) -> int:
    with _client(args) as gan:
        done = gan.set_alias(args.model, args.alias, args.version)
    print(f"{done['name']}: {done['alias']} -> version {done['version']}")
    return 0


def _upload(args: argparse.Namespace) -> int:
    with _client(args) as gan:
        meta = gan.upload_dataset(args.path, name=args.name)
    print(meta["id"])  # alone on stdout, so scripts can capture it
    shape = "x".join(map(str, meta["image_shape"]))
    print(
        f"{meta['size']} images {shape}, {meta['num_classes']} classes; train on it with: "
        f"gan-serve jobs submit --dataset {meta['id']} ...",
        file=sys.stderr,
    )
    return 0


def _datasets(args: argparse.Namespace) -> int:
    with _client(args) as gan:
        datasets = gan.datasets()
    rows = [["id", "name", "images", "classes", "shape", "created"]]
    for d in datasets:
        created = datetime.datetime.fromtimestamp(d["created"]).isoformat(timespec="seconds")
        shape = "x".join(map(str, d["image_shape"]))
        rows.append([d["id"], d["name"], str(d["size"]), str(d["num_classes"]), shape, created])
    _table(rows)
    return 0


def _submit(args: argparse.Namespace) -> int:
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --set {item!r} is not KEY=VALUE", file=sys.stderr)
            return EXIT_ERROR
        overrides[key.strip()] = parse_value(value.strip())
    with _client(args) as gan:
        job = gan.submit_job(
            args.model,
            preset=args.preset,
            overrides=overrides,
            base_version=args.base_version,
            dataset=args.dataset,
            promote=args.promote,
            promote_on=None if args.promote_on is None else args.promote_on.split(","),
        )
    print(job["id"])  # alone on stdout, so scripts can capture it
    print(f"queued; follow it with: gan-serve jobs watch {job['id']}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    with _client(args) as gan:
        page = gan.jobs(state=args.state, limit=args.limit)
    rows = [["id", "state", "model", "step", "created"]]
    for job in page["jobs"]:
        p = job["progress"]
        created = datetime.datetime.fromtimestamp(job["created"]).isoformat(timespec="seconds")
        step = f"{p['step']}/{p['max_steps']}"
        rows.append([job["id"], job["state"], job["model"], step, created])
    _table(rows)
    if page["total"] > len(page["jobs"]):
        print(f"({len(page['jobs'])} of {page['total']}; use --limit)", file=sys.stderr)
    return 0


def _watch(args: argparse.Namespace) -> int:
    last = ""

    def show(record: dict[str, Any]) -> None:
        nonlocal last
        line = progress_line(record)
        if line != last:  # redraw only on change, so logs of a non-terminal stay short
            print(f"\r{line:<{len(last)}}", end="", file=sys.stderr, flush=True)
            last = line

    with _client(args) as gan:
        job = gan.wait(args.id, poll=args.poll, progress=show)
    print(file=sys.stderr)
    if job["state"] == "succeeded" and job.get("kind") == "export":
        print(f"succeeded: {job['progress']['images']} images", file=sys.stderr)
        return 0
    if job["state"] == "succeeded":
        version = job.get("published_version")
        promoted = "promoted" if job.get("promoted") else "not promoted"
        print(f"succeeded: version {version}, {promoted}", file=sys.stderr)
        return 0
    reason = f": {job['error']}" if job.get("error") else ""
    print(f"{job['state']}{reason}", file=sys.stderr)
    return 1


def progress_line(record: dict[str, Any]) -> str:
    """``[#####.....] 120/400 running  loss_d 0.612  loss_g 1.204  ETA 0:01:23``"""
    p = record["progress"]
    step, total = p["step"], p["max_steps"]
    if record.get("kind") == "export":
        step, total = p["images"] or 0, p["images_total"] or 0
    filled = int(BAR_WIDTH * step / total) if total else 0
    parts = [f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {step}/{total} {record['state']}"]
    for key in ("loss_d", "loss_g"):
        if p.get(key) is not None:
            parts.append(f"{key} {p[key]:.3f}")
    if p.get("eta_s") is not None and record["state"] == "running":
        parts.append(f"ETA {datetime.timedelta(seconds=round(p['eta_s']))}")
    return "  ".join(parts)


def _log(args: argparse.Namespace) -> int:
    with _client(args) as gan:
        sys.stdout.write(gan.job_log(args.id))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as gan:
        job = gan.cancel_job(args.id)
    note = "cancelled" if job["state"] == "cancelled" else "cancel requested; it stops soon"
    print(f"{job['id']}: {note}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    with _client(args) as gan:
        print(f"{gan.resume_job(args.id)['id']}: queued again")
    return 0


def _export(args: argparse.Namespace) -> int:
    with _client(args) as gan:
        job = gan.start_export(
            args.model,
            args.n,
            version=args.version,
            seed=args.seed,
            label=args.label,
            label_mix=args.label_mix,
            truncation=args.truncation,
            format=args.format,
            shard_size=args.shard_size,
        )
    print(job["id"])
    if args.out is None:
        return 0
    args.id, args.no_wait = job["id"], False
    return _download(args)


def _download(args: argparse.Namespace) -> int:
    """Shards as they are made, a line per shard; Ctrl-C stops the download, not the export."""

    def show(entry: dict[str, Any]) -> None:
        print(f"\r{entry['name']}  {entry['count']} images", end="", file=sys.stderr, flush=True)

    with _client(args) as gan:
        manifest = gan.download_export(args.id, args.out, wait=not args.no_wait, progress=show)
    print(file=sys.stderr)
    done = "complete" if manifest["complete"] else "not complete yet"
    print(f"{manifest['images']} images in {len(manifest['shards'])} shards in {args.out}: {done}")
    return 0


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    # Let `python -m gan_client.cli` exit the way the console script does.
    sys.exit(main())
