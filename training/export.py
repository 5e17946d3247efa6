"""Export a training run to ONNX and TorchScript, check parity, and publish a version.

The ONNX graphs follow DESIGN.md: generator ``z`` [N, latent_dim] (+ ``label`` int64 [N]) ->
``image`` [N, C, H, W]; discriminator ``image`` (+ ``label``) -> ``logit`` [N, 1]; dynamic
batch axis; one file each, no external-data sidecar. Parity: ONNX Runtime and TorchScript
must match eager torch within ``PARITY_ATOL`` on random inputs, or nothing is published.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from core.datasets import load_dataset
from core.repository import SAMPLES, Manifest, Repository
from training.config import TrainConfig
from training.loop import (
    BEST,
    CHECKPOINT,
    State,
    build_state,
    generate,
    load_best,
    load_checkpoint,
    samples_grid,
    serving_generator,
)

OPSET = 18
PARITY_ATOL = 1e-4  # absolute, on outputs in the model's range (images) or logits
PARITY_BATCH = 16
EVAL_SAMPLES = 10_000
log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """An export that failed its parity check or could not be written."""


def load_run(run_dir: Path) -> tuple[TrainConfig, State, dict[str, Any]]:
    ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    cfg = TrainConfig.model_validate(ckpt["config"])
    dataset, _ = load_dataset(cfg.dataset.source).split(
        cfg.dataset.val_fraction, cfg.dataset.split_seed
    )
    state = build_state(cfg, dataset)
    load_checkpoint(run_dir / CHECKPOINT, state)
    info = {"image_shape": ckpt["image_shape"], "class_names": ckpt["class_names"]}
    if cfg.select == "best":
        best = load_best(run_dir / BEST, cfg, state)
        info["selected"] = {"step": best.step, "fid_train": best.fid_train}
    info["dataset"] = {
        "source": cfg.dataset.source,
        "name": dataset.name,
        "size": len(dataset.labels),
        "sha256": dataset.sha256(),
    }
    return cfg, state, info


def _example_inputs(
    net: nn.Module, shape: list[int], latent_dim: int, num_classes: int, role: str, n: int
) -> tuple[Tensor, ...]:
    gen = torch.Generator().manual_seed(n)
    if role == "generator":
        x = torch.randn(n, latent_dim, generator=gen)
    else:
        x = torch.rand(n, *shape, generator=gen)
    if not num_classes:
        return (x,)
    return x, torch.randint(0, num_classes, (n,), generator=gen)


def _export_onnx(net: nn.Module, args: tuple[Tensor, ...], role: str, path: Path) -> None:
    names = ["z" if role == "generator" else "image", "label"][: len(args)]
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.onnx.export(
        net,
        args,
        input_names=names,
        output_names=["image" if role == "generator" else "logit"],
        dynamic_shapes={n: {0: batch} for n in names_to_params(net, len(args))},
        opset_version=OPSET,
        dynamo=True,
        verbose=False,
    )
    if program is None:
        raise ExportError(f"{role}: the ONNX exporter returned nothing")
    program.save(str(path), external_data=False)


def names_to_params(net: nn.Module, count: int) -> list[str]:
    # torch.export keys dynamic shapes by the forward() parameter names.
    code = net.forward.__code__
    return list(code.co_varnames[1 : 1 + count])


def export_and_check(
    cfg: TrainConfig, g: nn.Module, d: nn.Module, shape: list[int], num_classes: int, out: Path
) -> dict[str, Any]:
    """Write {generator,discriminator}.{onnx,pt} into ``out``; return the parity report."""
    classes = num_classes if cfg.conditional else 0
    report: dict[str, Any] = {"atol": PARITY_ATOL, "batch": PARITY_BATCH}
    for role, net in (("generator", g), ("discriminator", d)):
        net.eval()
        example = _example_inputs(net, shape, cfg.latent_dim, classes, role, 4)
        _export_onnx(net, example, role, out / f"{role}.onnx")
        traced = torch.jit.trace(net, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        (out / f"{role}.pt").write_bytes(buffer.getvalue())

        check = _example_inputs(net, shape, cfg.latent_dim, classes, role, PARITY_BATCH)
        with torch.no_grad():
            expected = net(*check).numpy()
            scripted = torch.jit.load(out / f"{role}.pt")(*check).numpy()
        session = ort.InferenceSession(
            str(out / f"{role}.onnx"), providers=["CPUExecutionProvider"]
        )
        feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), check, strict=True)}
        onnx_out = session.run(None, feeds)[0]
        diffs = {
            "onnx_max_abs_diff": float(np.abs(onnx_out - expected).max()),
            "torchscript_max_abs_diff": float(np.abs(scripted - expected).max()),
        }
        report[role] = diffs
        worst = max(diffs.values())
        if not worst <= PARITY_ATOL:
            raise ExportError(f"{role}: exported outputs differ from torch by {worst:.2e}")
    return report


def publish_run(
    run_dir: Path,
    repo: Repository,
    name: str,
    *,
    aliases: Sequence[str] = ("production",),
    evaluate: bool = True,
    parent_version: int | None = None,
    extra_training: dict[str, Any] | None = None,
    partial: bool = False,
) -> Manifest:
    """Export the run's serving generator and its discriminator as the model's next version.

    A run stopped before ``max_steps`` is refused unless ``partial``: a half-trained model
    published by accident would look like the finished one.
    """
    cfg, state, info = load_run(run_dir)
    if state.step < cfg.max_steps and not partial:
        raise ExportError(
            f"{run_dir} stopped at step {state.step} of {cfg.max_steps}: finish it (train again "
            "with the same run directory resumes it) or publish it as it is with --partial"
        )
    g = serving_generator(cfg, state)
    num_classes = len(info["class_names"])
    metrics: dict[str, Any] = {}
    if evaluate:
        metrics = evaluation(cfg, g, num_classes)
    with repo.staging(name) as staged:
        parity = export_and_check(cfg, g, state.d, info["image_shape"], num_classes, staged)
        (staged / SAMPLES).write_bytes(samples_grid(cfg, g, num_classes))
        conditional = cfg.conditional
        manifest = {
            "name": name,
            "architecture": cfg.architecture_name,
            "latent": {"dim": cfg.latent_dim, "prior": cfg.prior},
            "num_classes": num_classes if conditional else 0,
            "class_names": info["class_names"] if conditional else [],
            "image_shape": info["image_shape"],
            "output_range": list(cfg.output_range),
            "tensors": {
                "generator": {
                    "inputs": ["z", "label"] if conditional else ["z"],
                    "outputs": ["image"],
                },
                "discriminator": {
                    "inputs": ["image", "label"] if conditional else ["image"],
                    "outputs": ["logit"],
                },
            },
            "opset": OPSET,
            "training": {
                "config": cfg.model_dump(mode="json"),
                "steps": state.step,
                **({"selected": info["selected"]} if "selected" in info else {}),
                "weights": "ema" if cfg.ema_decay > 0 else "raw",
                **(extra_training or {}),
            },
            "dataset": info["dataset"],
            "metrics": metrics,
            "parity": parity,
            "parent_version": parent_version,
        }
        published = repo.publish(staged, manifest, list(aliases))
    log.info("published %s v%d", name, published.version)
    return published


def evaluation(cfg: TrainConfig, g: nn.Module, num_classes: int) -> dict[str, Any]:
    """Final figures on EVAL_SAMPLES images, beside the real-data reference, and their
    usefulness scores (training/usefulness.py)."""
    from training.evaluate import for_dataset
    from training.usefulness import usefulness

    evaluator = for_dataset(cfg.dataset)
    if evaluator is None:
        return {"skipped": "the evaluation classifier scores 28x28 grayscale digits only"}
    labels = np.arange(EVAL_SAMPLES, dtype=np.int64) % num_classes if cfg.conditional else None
    images = _nchw(generate(cfg, g, np.arange(10**6, 10**6 + EVAL_SAMPLES), labels))
    source = f"{EVAL_SAMPLES} samples of the exported generator (torch), seeds 1000000+"
    return {
        "generated": evaluator.evaluate(images, labels),
        "real_reference": evaluator.reference(),
        "usefulness": usefulness(evaluator, images, labels, cfg.usefulness, source=source),
        "classifier": evaluator.classifier_info,
        "protocol": f"{EVAL_SAMPLES} samples (seeds 1000000+) vs the held-out split",
    }


def _nchw(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2)
