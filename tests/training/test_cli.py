from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from core.repository import Repository
from training.events import EXIT_STOPPED
from training.loop import CHECKPOINT

ROOT = Path(__file__).resolve().parents[2]
# One thread per process: tiny networks, and a loaded machine makes thread pools crawl.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY = [
    "--set",
    "batch_size=16",
    "--set",
    "network.width=4",
    "--set",
    "latent_dim=8",
]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_help_mentions_the_commands_and_set() -> None:
    top = _cli("--help", timeout=60)
    assert top.returncode == 0, top.stderr
    for command in ("train", "evaluate", "export", "classifier"):
        assert command in top.stdout
    train_help = _cli("train", "--help", timeout=60)
    assert train_help.returncode == 0, train_help.stderr
    assert "--set" in train_help.stdout
    assert "KEY=VALUE" in train_help.stdout
    assert str(EXIT_STOPPED) in train_help.stdout


def test_bad_override_fails_with_the_field_named(tmp_path: Path) -> None:
    result = _cli(
        "train",
        "--config",
        "training/configs/dcgan.toml",
        "--set",
        "max_stpes=4",
        "--run-dir",
        str(tmp_path / "run"),
        timeout=60,
    )
    assert result.returncode != 0
    assert "max_stpes" in result.stderr
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_select_best_without_evaluation_is_refused_before_training(tmp_path: Path) -> None:
    result = _cli(
        "train",
        "--config",
        "training/configs/mlp-hinge.toml",
        "--no-eval",
        "--run-dir",
        str(tmp_path / "run"),
        timeout=60,
    )
    assert result.returncode != 0
    assert 'select = "best"' in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_evaluates_exports_and_publishes(tmp_path: Path) -> None:
    run_dir, models = tmp_path / "run", tmp_path / "models"
    result = _cli(
        "train",
        "--config",
        "training/configs/cdcgan.toml",
        "--set",
        "max_steps=4",
        *TINY,
        "--set",
        "eval_every=2",
        "--set",
        "eval_samples=100",
        "--set",
        "usefulness.classifier_steps=20",
        "--name",
        "e2e",
        "--run-dir",
        str(run_dir),
        "--out",
        str(models),
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    events = _json_lines(result.stdout)  # every stdout line is one JSON event
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start"
    assert kinds[-2:] == ["completed", "published"]
    assert [e["step"] for e in events if e["event"] == "evaluation"] == [2, 4]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["step"] == 4
    evaluation = next(e for e in events if e["event"] == "evaluation")["metrics"]
    assert evaluation["samples"] == 100
    assert {"fid", "mode_coverage", "label_accuracy"} <= evaluation.keys()
    assert events[-1] == {"event": "published", "name": "e2e", "version": 1}

    repo = Repository(models)
    assert repo.versions("e2e") == [1]
    assert repo.resolve("e2e") == 1  # promoted to production
    manifest = repo.verify("e2e", 1)
    assert manifest.architecture == "cdcgan"
    assert manifest.num_classes == 10
    assert manifest.latent.dim == 8
    assert manifest.training["steps"] == 4
    assert manifest.training["preset"] == "cdcgan"
    assert manifest.training["config"]["max_steps"] == 4
    assert manifest.training["config"]["network"]["width"] == 4
    assert "--set max_steps=4" in manifest.training["command"]
    generated = manifest.metrics["generated"]
    assert {"fid", "mode_coverage", "label_accuracy", "parzen"} <= generated.keys()
    assert generated["fid"] >= 0
    assert 0 <= generated["label_accuracy"] <= 1
    assert sum(generated["mode_coverage"]["histogram"]) == pytest.approx(1.0)
    reference = manifest.metrics["real_reference"]
    assert {"fid", "mode_coverage", "parzen"} <= reference.keys()
    assert reference["fid"] < generated["fid"]  # four steps of training are far from the data
    usefulness = manifest.metrics["usefulness"]
    assert {"prdc", "prdc_real", "cas", "cas_real", "nas", "protocol"} <= usefulness.keys()
    assert usefulness["protocol"]["classifier"]["steps"] == 20

    session = ort.InferenceSession(
        str(repo.version_dir("e2e", 1) / "generator.onnx"), providers=["CPUExecutionProvider"]
    )
    (images,) = session.run(
        None, {"z": np.zeros((3, 8), np.float32), "label": np.array([0, 5, 9], np.int64)}
    )
    assert images.shape == (3, 1, 28, 28)

    assert (run_dir / "config.json").is_file()
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "step-0000002.png",
        "step-0000004.png",
    ]


@pytest.mark.slow
def test_sigterm_stops_with_a_checkpoint_and_publishes_nothing(tmp_path: Path) -> None:
    run_dir, models = tmp_path / "run", tmp_path / "models"
    log = tmp_path / "stdout.jsonl"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "training",
                "train",
                "--config",
                "training/configs/dcgan.toml",
                "--set",
                "max_steps=100000",
                *TINY,
                "--set",
                "log_every=1",
                "--set",
                "checkpoint_every=100000",
                "--set",
                "eval_every=100000",
                "--no-eval",
                "--name",
                "stopped",
                "--run-dir",
                str(run_dir),
                "--out",
                str(models),
            ],
            cwd=ROOT,
            env=ENV,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            stats = run_dir / "stats.jsonl"
            while time.monotonic() < deadline and proc.poll() is None:
                if stats.exists() and '"event": "progress"' in stats.read_text():
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the run ended before it could be stopped"
            assert stats.exists(), "no progress within 120 s"
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert proc.returncode == EXIT_STOPPED, stderr[-3000:]
    events = _json_lines(log.read_text())
    assert events[-1]["event"] == "stopped"
    stopped_at = events[-1]["step"]
    assert 1 <= stopped_at < 100000
    assert "completed" not in [e["event"] for e in events]
    ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    assert ckpt["step"] == stopped_at  # written at the step boundary where it stopped
    assert Repository(models).models() == []  # nothing published


def test_evaluate_scores_a_published_version(template_repo: Path) -> None:
    result = _cli(
        "evaluate",
        "--models",
        str(template_repo),
        "--name",
        "tiny-cgan",
        "--version",
        "1",
        "--samples",
        "200",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    generated, reference = report["generated"], report["real_reference"]
    assert generated["samples"] == 200
    assert {"fid", "mode_coverage", "label_accuracy", "parzen"} <= generated.keys()
    assert reference["samples"] == 4500
    assert reference["fid"] < generated["fid"]
    assert reference["label_accuracy"] > 0.9  # the classifier knows real digits


def test_score_writes_the_usefulness_scores_into_the_manifest_alone(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.__main__ import main
    from training.usefulness import UNCONDITIONAL

    folder = models_dir / "tiny-cgan" / "1"
    before = json.loads((folder / "model.json").read_text())
    assert main(["score", str(folder), "--set", "classifier_steps=60"]) == 0
    manifest = Repository(models_dir).verify("tiny-cgan", 1)  # every artifact's sha256 holds
    block = manifest.metrics["usefulness"]
    assert block == json.loads(capsys.readouterr().out)
    assert {**before, "metrics": {"usefulness": block}} == manifest.to_dict()
    assert block["command"] == f"python -m training score {folder} --set classifier_steps=60"
    assert block["protocol"]["samples"] == 10_000
    assert block["protocol"]["classifier"]["steps"] == 60
    assert 0 <= block["cas"] <= 1 and block["cas_real"] > 0.5  # chance is 0.1
    assert set(block["nas"]) == {"real_only", "with_synthetic", "gain"}
    # Four steps of training are far from the digits; the training images are not.
    assert block["prdc"]["precision"] < 0.5 < block["prdc_real"]["precision"]

    assert main(["score", str(models_dir / "tiny-gan" / "1"), "--set", "classifier_steps=60"]) == 0
    unconditional = Repository(models_dir).manifest("tiny-gan", 1).metrics["usefulness"]
    assert {"prdc", "prdc_real"} <= unconditional.keys()
    assert not {"cas", "cas_real", "nas"} & unconditional.keys()
    assert unconditional["protocol"]["classifier"] == UNCONDITIONAL
    with pytest.raises(SystemExit, match="not a version folder"):
        main(["score", str(models_dir / "tiny-gan")])
