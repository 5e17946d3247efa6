"""Command line: ``python -m training {train,evaluate,score,export,report,classifier} --help``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from core.repository import Manifest
from training.events import EXIT_STOPPED, EventType, encode

if TYPE_CHECKING:
    import numpy as np

    from core.repository import Repository


def _train(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from core.repository import Repository
    from training.config import load_config
    from training.evaluate import for_dataset
    from training.export import publish_run
    from training.loop import generate, pick_device, train

    cfg = load_config(args.config, args.set)
    device = pick_device(args.device)
    run_dir = Path(args.run_dir or f"runs/{args.name}")
    stop = {"requested": False}
    parent = os.getppid()

    def should_stop() -> bool:
        # --exit-with-parent: a job worker killed outright must not leave training orphaned.
        return stop["requested"] or (args.exit_with_parent and os.getppid() != parent)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    evaluator = for_dataset(cfg.dataset) if not args.no_eval else None
    if cfg.select == "best" and evaluator is None:
        raise SystemExit(
            'select = "best" picks by FID from the digits classifier: it needs evaluation on '
            "and a 28x28 digits dataset"
        )

    def evaluate(g: Any) -> dict[str, Any]:
        if evaluator is None:
            return {}
        n = cfg.eval_samples
        labels = np.arange(n, dtype=np.int64) % 10 if cfg.conditional else None
        # Seeds apart from the published evaluation's (10**6 on): choosing a checkpoint on
        # these samples must not favour the exact images the final figures are measured on.
        seeds = np.arange(2 * 10**6, 2 * 10**6 + n)
        images = generate(cfg, g, seeds, labels).transpose(0, 3, 1, 2)
        return evaluator.evaluate(images, labels, parzen=False, train_fid=cfg.select == "best")

    def progress(event: dict[str, Any]) -> None:
        print(encode(event), flush=True)

    result = train(
        cfg,
        run_dir,
        progress=progress,
        should_stop=should_stop,
        evaluate=evaluate,
        init_from=Path(args.init_from) if args.init_from else None,
        device=device,
    )
    if result.status == "stopped" or stop["requested"]:  # a stop after the last step too
        return EXIT_STOPPED  # checkpointed at the end: a resumed run publishes at once
    if args.out:
        command = " ".join(["python -m training", *sys.argv[1:]])
        manifest = publish_run(
            run_dir,
            Repository(args.out, base=args.base_models),
            args.name,
            aliases=[] if args.no_promote else ["production"],
            evaluate=not args.no_eval,
            parent_version=args.parent_version,
            extra_training={
                "command": command,
                "preset": Path(args.config).stem,
                "device": device,
                "torch_threads": torch.get_num_threads(),
            },
        )
        _announce(manifest)
    return 0


def _announce(manifest: Manifest) -> None:
    """Tell the job runner what was published (the job protocol: training/events.py)."""
    event = {"event": EventType.PUBLISHED, "name": manifest.name, "version": manifest.version}
    print(encode(event), flush=True)


def _export(args: argparse.Namespace) -> int:
    from core.repository import Repository
    from training.export import publish_run

    manifest = publish_run(
        Path(args.run_dir),
        Repository(args.out),
        args.name,
        aliases=[] if args.no_promote else ["production"],
        evaluate=not args.no_eval,
        partial=args.partial,
    )
    _announce(manifest)
    return 0


def _published_samples(
    repo: Repository, name: str, version: int, samples: int
) -> tuple[Manifest, np.ndarray, np.ndarray | None]:
    """The version's manifest (artifacts checked), its generator.onnx's uint8 images
    [N, 1, H, W] of seeds 1,000,000 on (the published evaluation's), and their labels
    (class = seed index mod classes; None when unconditional)."""
    import numpy as np
    import onnxruntime as ort

    from core import imaging, latent

    m = repo.verify(name, version)
    session = ort.InferenceSession(str(repo.version_dir(name, version) / "generator.onnx"))
    seeds = list(range(10**6, 10**6 + samples))
    feeds: dict[str, np.ndarray] = {"z": latent.latents(seeds, m.latent.dim, m.latent.prior)}
    labels = None
    if m.conditional:
        labels = np.arange(samples, dtype=np.int64) % m.num_classes
        feeds["label"] = labels
    images = imaging.to_uint8(session.run(["image"], feeds)[0], tuple(m.output_range))  # type: ignore[arg-type]
    return m, images.transpose(0, 3, 1, 2), labels


def _evaluate(args: argparse.Namespace) -> int:
    from core.repository import Repository
    from training.config import DatasetConfig
    from training.evaluate import Evaluator

    repo = Repository(args.models)
    version = repo.resolve(args.name, args.version)
    m, images, labels = _published_samples(repo, args.name, version, args.samples)
    source = m.training.get("config", {}).get("dataset", {})
    evaluator = Evaluator(DatasetConfig.model_validate(source))
    report = {
        "generated": evaluator.evaluate(images, labels),
        "real_reference": evaluator.reference(),
    }
    print(json.dumps(report, indent=2))
    return 0


def _score(args: argparse.Namespace) -> int:
    """Usefulness scores of a published version, written into its manifest."""
    from core.repository import Repository
    from training.config import DatasetConfig, UsefulnessConfig, apply_overrides, parse_overrides
    from training.evaluate import Evaluator
    from training.export import EVAL_SAMPLES
    from training.usefulness import usefulness

    folder = Path(args.version_dir)
    if not folder.name.isdigit():
        raise SystemExit(f"{folder} is not a version folder (MODELS/NAME/VERSION)")
    repo, name, version = Repository(folder.parent.parent), folder.parent.name, int(folder.name)
    m, images, labels = _published_samples(repo, name, version, EVAL_SAMPLES)
    config = m.training.get("config", {})
    overrides = parse_overrides(args.set)
    cfg = UsefulnessConfig.model_validate(apply_overrides(config.get("usefulness", {}), overrides))
    evaluator = Evaluator(DatasetConfig.model_validate(config.get("dataset", {})))
    source = f"{len(images)} samples of generator.onnx, seeds 1000000+"
    block = usefulness(evaluator, images, labels, cfg, source=source)
    sets = [f"--set {item}" for item in args.set]
    block["command"] = " ".join(["python -m training score", str(folder), *sets])
    repo.amend_metrics(name, version, "usefulness", block)
    print(json.dumps(block, indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    """Markdown tables: each model's serving version beside the real-data reference, then
    every version's usefulness scores."""
    from core.repository import Repository
    from training.report import figures_table, usefulness_table

    repo = Repository(args.models)
    print("\n".join([*figures_table(repo), "", *usefulness_table(repo)]))
    return 0


def _classifier(args: argparse.Namespace) -> int:
    from training.classifier import train_classifier

    print(json.dumps(train_classifier(Path(args.out), epochs=args.epochs), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a GAN from a TOML config; with --out, evaluate, export and publish it",
        description="Train G and D (resuming from RUN_DIR/checkpoint.pt if present), printing "
        "progress as JSON lines. SIGTERM/SIGINT stop at a step boundary with a checkpoint "
        f"written and exit code {EXIT_STOPPED}. With --out, the finished run is evaluated, "
        "exported to ONNX and TorchScript, parity-checked and published as a new version.",
    )
    t.add_argument("--config", required=True, help="a TOML file, e.g. training/configs/paper.toml")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (dotted for nested: optimizer.lr_g=0.001)",
    )
    t.add_argument("--name", default="model", help="model name in the repository")
    t.add_argument("--run-dir", help="checkpoints, stats and grids (default runs/NAME)")
    t.add_argument("--out", help="model repository to publish into (e.g. models/)")
    t.add_argument(
        "--base-models",
        help="a read-only repository under --out: new versions are numbered after its versions",
    )
    t.add_argument(
        "--init-from", help="a checkpoint, or a published version folder, to fine-tune from"
    )
    t.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop (checkpoint, exit 3) when the parent process dies",
    )
    t.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="cpu",
        help="where to train (auto: cuda when available); results differ in float rounding",
    )
    t.add_argument(
        "--quiet-libraries",
        action="store_true",
        help="drop other packages' warnings (torch, onnx): a job log shows the run's own lines",
    )
    t.add_argument("--parent-version", type=int, help="recorded in the manifest")
    t.add_argument("--no-eval", action="store_true", help="skip classifier-based metrics")
    t.add_argument("--no-promote", action="store_true", help="publish without moving production")
    t.set_defaults(func=_train)

    e = sub.add_parser("export", help="export a finished run and publish it as a new version")
    e.add_argument("--run-dir", required=True)
    e.add_argument("--out", required=True, help="model repository, e.g. models/")
    e.add_argument("--name", required=True)
    e.add_argument("--no-eval", action="store_true")
    e.add_argument("--no-promote", action="store_true")
    e.add_argument(
        "--partial", action="store_true", help="publish a run stopped before its max_steps"
    )
    e.set_defaults(func=_export)

    v = sub.add_parser("evaluate", help="score a published version with the project's classifier")
    v.add_argument("--models", default="models")
    v.add_argument("--name", required=True)
    v.add_argument("--version", help="number or alias (default: production)")
    v.add_argument("--samples", type=int, default=10_000)
    v.set_defaults(func=_evaluate)

    s = sub.add_parser(
        "score",
        help="compute a published version's usefulness scores and write them into its manifest",
        description="PRDC, CAS and NAS (training/usefulness.py) of 10,000 samples of a "
        "published version, written atomically into its model.json as metrics.usefulness "
        "with this command; the version's artifacts, and so their sha256s, stay as they are.",
    )
    s.add_argument("version_dir", help="a version folder, e.g. models/mnist-cdcgan/3")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a usefulness field of the version's config (classifier_steps=200)",
    )
    s.set_defaults(func=_score)

    r = sub.add_parser("report", help="markdown tables of the versions' figures and scores")
    r.add_argument("--models", default="models")
    r.set_defaults(func=_report)

    c = sub.add_parser("classifier", help="train and export the evaluation classifier")
    c.add_argument("--out", default="training/classifier")
    c.add_argument("--epochs", type=int, default=12)
    c.set_defaults(func=_classifier)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    if getattr(args, "quiet_libraries", False):
        _quiet_libraries()
    return int(args.func(args))


def _quiet_libraries() -> None:
    """Warnings from other packages (torch's exporter, copyreg on torch's behalf) are ignored
    and their loggers show errors only (torchvision "not installed" lines); the warnings and
    log lines of this package (training, core) stay. Before torch is imported: it reads
    TORCH_LOGS then."""
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"(training|core)(\.|$)")
    os.environ.setdefault("TORCH_LOGS", "-torch")
    for name in ("onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
