from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from core import imaging
from core.datasets import load_dataset
from tests.conftest import tiny_config
from training.config import TrainConfig
from training.loop import (
    CHECKPOINT,
    build_state,
    generate,
    pick_device,
    samples_grid,
    serving_generator,
    train,
)

PROGRESS_KEYS = {"step", "epoch", "loss_d", "loss_g", "d_real", "d_fake", "images_per_s", "eta_s"}
# The paper preset's SGD schedule (momentum ramp, lr decay) squeezed into a few steps.
SGD = {
    "name": "sgd",
    "lr_g": 0.05,
    "lr_d": 0.05,
    "momentum": 0.5,
    "momentum_final": 0.7,
    "momentum_ramp_steps": 3,
    "lr_decay": 0.95,
}


def _checkpoint(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def _assert_same_tensors(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _assert_same_optimizer(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        _assert_same_tensors(a["state"][i], b["state"][i])


def _initial_generator_state(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    train_split, _ = load_dataset(cfg.dataset.source).split(
        cfg.dataset.val_fraction, cfg.dataset.split_seed
    )
    return {k: v.clone() for k, v in build_state(cfg, train_split).g.state_dict().items()}


def test_k_discriminator_steps_per_generator_step(tmp_path: Path) -> None:
    cfg = tiny_config("tiny-gan", d_steps=3, max_steps=2)
    result = train(cfg, tmp_path)
    assert result.status == "completed" and result.step == 2
    ckpt = _checkpoint(tmp_path)
    assert ckpt["step"] == 2
    d_steps = {int(s["step"]) for s in ckpt["opt_d"]["state"].values()}
    g_steps = {int(s["step"]) for s in ckpt["opt_g"]["state"].values()}
    assert g_steps == {2}
    assert d_steps == {6}  # k = 3 discriminator updates per generator update


def test_ema_after_one_step_is_the_warmed_up_average(tmp_path: Path) -> None:
    cfg = tiny_config("tiny-gan", max_steps=1, ema_decay=0.9)
    initial = _initial_generator_state(cfg)
    train(cfg, tmp_path)
    ckpt = _checkpoint(tmp_path)
    # Warm-up at step 0: decay min(0.9, 1 / 10) = 0.1, so ema = 0.1 * g0 + 0.9 * g1.
    changed = 0
    for key, g0 in initial.items():
        g1, ema = ckpt["g"][key], ckpt["g_ema"][key]
        torch.testing.assert_close(ema, 0.1 * g0 + 0.9 * g1, rtol=1e-5, atol=1e-7)
        assert (ema >= torch.minimum(g0, g1) - 1e-7).all()
        assert (ema <= torch.maximum(g0, g1) + 1e-7).all()
        changed += int(not torch.equal(g0, g1))
    assert changed > 0  # the step moved G, so the check above is not vacuous


def test_ema_weights_differ_from_the_raw_generator(tmp_path: Path) -> None:
    cfg = tiny_config("tiny-cgan", max_steps=3, ema_decay=0.9)
    train(cfg, tmp_path)
    ckpt = _checkpoint(tmp_path)
    weights = [k for k in ckpt["g"] if "running" not in k and "num_batches" not in k]
    assert any(not torch.equal(ckpt["g"][k], ckpt["g_ema"][k]) for k in weights)
    # Buffers (batch-norm statistics) are copied, not averaged.
    for key in ckpt["g"]:
        if "running" in key or "num_batches" in key:
            assert torch.equal(ckpt["g"][key], ckpt["g_ema"][key]), key


def test_serving_generator_is_the_ema_unless_disabled() -> None:
    dataset = load_dataset("builtin:mnist")
    with_ema = tiny_config("tiny-gan", ema_decay=0.9)
    without = tiny_config("tiny-gan", ema_decay=0.0)
    state = build_state(with_ema, dataset)
    assert serving_generator(with_ema, state) is state.g_ema
    assert serving_generator(without, state) is state.g


def test_without_ema_the_ema_copy_is_left_at_init(tmp_path: Path) -> None:
    cfg = tiny_config("tiny-gan", max_steps=2, ema_decay=0.0)
    initial = _initial_generator_state(cfg)
    train(cfg, tmp_path)
    ckpt = _checkpoint(tmp_path)
    _assert_same_tensors(ckpt["g_ema"], initial)
    assert any(not torch.equal(ckpt["g"][k], initial[k]) for k in initial)


@pytest.mark.parametrize(
    "cfg",
    [
        tiny_config("tiny-gan", optimizer=SGD),  # dropout, SGD momentum ramp, lr decay
        tiny_config("tiny-cgan", d_steps=2),  # batch norm, labels, Adam, k = 2
        tiny_config("tiny-gan", r1_gamma=1.0),  # R1's double backward
    ],
    ids=["paper-mlp-sgd", "cdcgan-adam", "paper-mlp-r1"],
)
def test_resumed_run_equals_continuous_run(tmp_path: Path, cfg: TrainConfig) -> None:
    continuous, resumed = tmp_path / "continuous", tmp_path / "resumed"
    assert train(cfg, continuous).step == 4
    first = train(cfg.model_copy(update={"max_steps": 2}), resumed)
    assert first.status == "completed" and first.step == 2
    assert _checkpoint(resumed)["step"] == 2
    second = train(cfg, resumed)
    assert second.status == "completed" and second.step == 4

    a, b = _checkpoint(continuous), _checkpoint(resumed)
    assert a["step"] == b["step"] == 4
    for net in ("g", "d", "g_ema"):
        _assert_same_tensors(a[net], b[net])
    for opt in ("opt_g", "opt_d"):
        _assert_same_optimizer(a[opt], b[opt])
    starts = [e["step"] for e in _events(resumed) if e["event"] == "start"]
    assert starts == [0, 2]
    # The resumed run logged the same losses as the continuous one.
    losses = {
        run: [
            (e["step"], e["loss_d"], e["loss_g"]) for e in _events(run) if e["event"] == "progress"
        ]
        for run in (continuous, resumed)
    }
    assert losses[continuous] == losses[resumed]


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tmp_path: Path) -> None:
    cfg = tiny_config("tiny-gan", max_steps=2)
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    train(cfg.model_copy(update={"seed": 1}), tmp_path / "c")
    a, b, c = (_checkpoint(tmp_path / run) for run in "abc")
    for net in ("g", "d", "g_ema"):
        _assert_same_tensors(a[net], b[net])
    assert any(not torch.equal(a["g"][k], c["g"][k]) for k in a["g"])


def test_finished_run_is_not_trained_further(tmp_path: Path) -> None:
    cfg = tiny_config("tiny-gan", max_steps=2)
    train(cfg, tmp_path)
    before = _checkpoint(tmp_path)
    again = train(cfg, tmp_path)
    assert again.status == "completed" and again.step == 2
    _assert_same_tensors(before["g"], _checkpoint(tmp_path)["g"])
    assert [e["event"] for e in _events(tmp_path)][-2:] == ["start", "completed"]


def test_should_stop_ends_at_a_step_boundary_with_a_checkpoint(tmp_path: Path) -> None:
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2

    cfg = tiny_config("tiny-gan", max_steps=10, checkpoint_every=1000)
    result = train(cfg, tmp_path, should_stop=should_stop)
    assert result.status == "stopped"
    assert result.step == 2
    assert _checkpoint(tmp_path)["step"] == 2  # written by the stop, not the periodic save
    events = _events(tmp_path)
    assert events[-1]["event"] == "stopped" and events[-1]["step"] == 2
    assert "completed" not in [e["event"] for e in events]
    assert max(e["step"] for e in events if e["event"] == "progress") == 2
    assert not (tmp_path / "samples.png").exists()  # no evaluation was due

    # A stopped run resumes where it stopped.
    resumed = train(cfg.model_copy(update={"max_steps": 3}), tmp_path)
    assert resumed.status == "completed" and resumed.step == 3


def test_init_from_takes_the_weights_but_not_the_step(tmp_path: Path) -> None:
    # The base run has another seed, so its weights are far from this run's own init.
    train(tiny_config("tiny-gan", max_steps=2, seed=5), tmp_path / "base")
    base = _checkpoint(tmp_path / "base")
    one_step = tiny_config("tiny-gan", max_steps=1)
    tuned = train(one_step, tmp_path / "tuned", init_from=tmp_path / "base" / CHECKPOINT)
    assert tuned.status == "completed" and tuned.step == 1
    assert [e["step"] for e in _events(tmp_path / "tuned") if e["event"] == "start"] == [0]
    train(one_step, tmp_path / "fresh")
    tuned_g, fresh_g = _checkpoint(tmp_path / "tuned")["g"], _checkpoint(tmp_path / "fresh")["g"]
    # One Adam step (lr 2e-4) from the base weights stays next to them.
    for key, weights in base["g"].items():
        assert (tuned_g[key] - weights).abs().max() < 1e-3, key
    assert any((fresh_g[k] - w).abs().max() > 1e-2 for k, w in base["g"].items())


def test_stop_before_the_first_step_still_writes_a_checkpoint(tmp_path: Path) -> None:
    result = train(tiny_config("tiny-gan"), tmp_path, should_stop=lambda: True)
    assert result.status == "stopped" and result.step == 0
    assert _checkpoint(tmp_path)["step"] == 0


def test_run_describes_itself_and_reports_progress(tmp_path: Path) -> None:
    cfg = tiny_config("tiny-gan", max_steps=4, eval_every=2, log_every=1)
    received: list[dict[str, Any]] = []
    seen_at_start: dict[str, bool] = {}

    def progress(event: dict[str, Any]) -> None:
        if event["event"] == "start":
            seen_at_start["config"] = (tmp_path / "config.json").is_file()
            seen_at_start["checkpoint"] = (tmp_path / CHECKPOINT).exists()
        received.append(event)

    evaluated: list[bool] = []

    def evaluate(g: torch.nn.Module) -> dict[str, Any]:
        evaluated.append(all(not p.requires_grad for p in g.parameters()))  # the EMA copy
        return {"calls": len(evaluated)}

    result = train(cfg, tmp_path, progress=progress, evaluate=evaluate)

    # config.json, before the first step, and it validates back to the config.
    assert seen_at_start == {"config": True, "checkpoint": False}
    written = json.loads((tmp_path / "config.json").read_text())
    assert TrainConfig.model_validate(written) == cfg

    # Progress events: one per step (log_every=1), with the documented keys.
    steps = [e for e in received if e["event"] == "progress"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    for e in steps:
        assert PROGRESS_KEYS <= e.keys()
        assert e["max_steps"] == 4
        assert e["epoch"] == 0
        assert 0 <= e["d_real"] <= 1 and 0 <= e["d_fake"] <= 1
        assert np.isfinite([e["loss_d"], e["loss_g"]]).all()
        assert e["images_per_s"] > 0
    assert steps[-1]["eta_s"] == 0
    assert [e["event"] for e in received][0] == "start"
    assert [e["event"] for e in received][-1] == "completed"

    # stats.jsonl holds exactly the events the callback saw.
    assert _events(tmp_path) == json.loads(json.dumps(received))

    # One evaluation (grid + metrics) every eval_every steps, on the serving generator.
    evaluations = [e for e in received if e["event"] == "evaluation"]
    assert [(e["step"], e["metrics"]) for e in evaluations] == [
        (2, {"calls": 1}),
        (4, {"calls": 2}),
    ]
    assert evaluated == [True, True]
    assert result.metrics == {"calls": 2}
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["step-0000002.png", "step-0000004.png"]
    for path in [tmp_path / "samples" / g for g in grids] + [tmp_path / "samples.png"]:
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert im.size == (10 * 30 + 2, 10 * 30 + 2)  # 10x10 tiles of 28 px, 2 px padding
    assert (tmp_path / "samples.png").read_bytes() == (
        tmp_path / "samples" / "step-0000004.png"
    ).read_bytes()


def test_conditional_grid_has_one_row_per_class() -> None:
    cfg = tiny_config("tiny-cgan")
    state = build_state(cfg, load_dataset("builtin:mnist"))
    g = serving_generator(cfg, state)
    with Image.open(io.BytesIO(samples_grid(cfg, g, 10))) as im:
        grid = np.asarray(im)
    # Seeds 0..99 row by row, as /v1/sample names them; row r asks for class r.
    by_row = generate(cfg, g, np.arange(100), np.repeat(np.arange(10), 10))
    np.testing.assert_array_equal(grid, imaging.grid(by_row, cols=10)[..., 0])
    all_zeros = generate(cfg, g, np.arange(100), np.zeros(100, np.int64))
    assert not np.array_equal(by_row, all_zeros)


def test_device_auto_picks_cuda_only_when_there_is_one() -> None:
    has_gpu = torch.cuda.is_available()
    assert pick_device("auto") == ("cuda" if has_gpu else "cpu")
    assert pick_device("cpu") == "cpu"
    if not has_gpu:
        with pytest.raises(ValueError, match="no CUDA device"):
            pick_device("cuda")


def _scripted_fid(scores: dict[int, float]) -> Any:
    """An evaluate callback reporting a chosen fid_train per evaluation, in order of steps."""
    steps = iter(sorted(scores))
    return lambda g: {"fid_train": scores[next(steps)]}


def test_select_best_keeps_the_lowest_fid_and_a_resumed_run_remembers_it(tmp_path: Path) -> None:
    from training.loop import BEST, Best

    cfg = tiny_config("tiny-gan", max_steps=6, eval_every=1, select="best")
    first = {1: 9.0, 2: 4.0, 3: 7.0}
    train(cfg.model_copy(update={"max_steps": 3}), tmp_path, evaluate=_scripted_fid(first))
    assert Best.read(tmp_path / BEST) == Best(2, 4.0)
    kept = torch.load(tmp_path / BEST, weights_only=True)
    last = _checkpoint(tmp_path)
    assert not torch.equal(kept["g"]["body.0.weight"], last["g_ema"]["body.0.weight"])

    # Resumed: 5.0 does not beat the remembered 4.0; 3.0 at step 5 does, and stays kept.
    train(cfg, tmp_path, evaluate=_scripted_fid({4: 5.0, 5: 3.0, 6: 6.0}))
    assert Best.read(tmp_path / BEST) == Best(5, 3.0)
    evaluations = [e for e in _events(tmp_path) if e["event"] == "evaluation"]
    assert [e["best_step"] for e in evaluations] == [1, 2, 2, 2, 5, 5]


def test_select_best_without_evaluation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="evaluation must be on"):
        train(tiny_config("tiny-gan", select="best"), tmp_path)
    bad = lambda g: {"fid": 1.0}  # noqa: E731 - no fid_train: nothing to choose by
    with pytest.raises(ValueError, match="needs fid_train"):
        train(tiny_config("tiny-gan", select="best", eval_every=1), tmp_path, evaluate=bad)


def test_a_fresh_run_in_a_reused_folder_forgets_the_old_best(tmp_path: Path) -> None:
    from training.loop import BEST, Best

    cfg = tiny_config("tiny-gan", max_steps=2, eval_every=1, select="best")
    train(cfg, tmp_path, evaluate=_scripted_fid({1: 1.0, 2: 2.0}))
    (tmp_path / CHECKPOINT).unlink()
    train(cfg, tmp_path, evaluate=_scripted_fid({1: 8.0, 2: 5.0}))
    assert Best.read(tmp_path / BEST) == Best(2, 5.0)


def test_r1_changes_training_and_zero_leaves_the_default_run_alone(tmp_path: Path) -> None:
    base = tiny_config("tiny-gan", max_steps=2)
    runs = {
        "plain": base,
        "zero": base.model_copy(update={"r1_gamma": 0.0}),
        "r1": base.model_copy(update={"r1_gamma": 10.0}),
    }
    d = {}
    for name, cfg in runs.items():
        train(cfg, tmp_path / name)
        d[name] = _checkpoint(tmp_path / name)["d"]
    _assert_same_tensors(d["plain"], d["zero"])
    assert any(not torch.equal(d["plain"][k], d["r1"][k]) for k in d["plain"])
