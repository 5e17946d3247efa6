"""The training loop, readable top to bottom.

``train(cfg, run_dir)`` knows nothing of HTTP or queues: the CLI and the job worker both call
it. A run describes itself: ``config.json`` before the first step, ``stats.jsonl`` during,
``checkpoint.pt`` (models, optimisers, EMA, config, step) every ``checkpoint_every`` steps and
when stopped, and a samples grid per evaluation.

Reproducibility: every random draw of step ``s`` comes from generators seeded by
``(cfg.seed, s)``, so a run resumed from a checkpoint continues exactly as if it had never
stopped, with no RNG state to carry.
"""

from __future__ import annotations

import copy
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from core import imaging, latent
from core.atomic import write_atomic
from core.datasets import Dataset, load_dataset
from training import losses, networks
from training.config import TrainConfig
from training.events import Event, EventType, RunFiles, encode

ProgressFn = Callable[[Event], None]
StopFn = Callable[[], bool]
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # select = "best": the kept evaluation's generator and discriminator


@dataclass
class RunResult:
    status: Literal["completed", "stopped"]
    step: int
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class State:
    """Everything a checkpoint holds."""

    g: networks.Generator
    d: networks.Discriminator
    g_ema: networks.Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0

    def state_dict(self, cfg: TrainConfig, dataset: Dataset) -> dict[str, Any]:
        return {
            "config": cfg.model_dump(mode="json"),
            "image_shape": list(dataset.image_shape),
            "class_names": dataset.class_names,
            "step": self.step,
            "g": self.g.state_dict(),
            "d": self.d.state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """One 63-bit seed per (run seed, step, stream), independent of anything else."""
    return int(np.random.default_rng([seed, step, stream]).integers(2**63))


def sample_latent(cfg: TrainConfig, n: int, generator: torch.Generator) -> Tensor:
    if cfg.prior == "uniform":  # the paper's U(-sqrt 3, sqrt 3): unit variance
        return (torch.rand(n, cfg.latent_dim, generator=generator) * 2 - 1) * 3**0.5
    return torch.randn(n, cfg.latent_dim, generator=generator)


def to_model_range(images_u8: Tensor, cfg: TrainConfig) -> Tensor:
    lo, hi = cfg.output_range
    return images_u8.float() / 255.0 * (hi - lo) + lo


def pick_device(name: str) -> str:
    """``auto`` means cuda when torch sees a GPU; asking for cuda without one is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device")
    return name


def build_state(cfg: TrainConfig, dataset: Dataset, device: str = "cpu") -> State:
    torch.manual_seed(cfg.seed)
    g, d = networks.build(cfg, dataset.image_shape, dataset.num_classes)
    g, d = g.to(device), d.to(device)  # initialised on the CPU: the same weights anywhere
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    o = cfg.optimizer
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    if o.name == "sgd":
        opt_g = torch.optim.SGD(g.parameters(), lr=o.lr_g, momentum=o.momentum)
        opt_d = torch.optim.SGD(d.parameters(), lr=o.lr_d, momentum=o.momentum)
    else:
        opt_g = torch.optim.Adam(g.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2))
        opt_d = torch.optim.Adam(d.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2))
    return State(g, d, g_ema, opt_g, opt_d)


# Fields a resumed run may change: how long it runs and how often it reports.
RESUMABLE_CHANGES = {"max_steps", "eval_every", "eval_samples", "checkpoint_every", "log_every"}


def load_checkpoint(path: Path, state: State, cfg: TrainConfig | None = None) -> None:
    """Restore a checkpoint; with ``cfg``, refuse one written under a different recipe."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if cfg is not None:
        ours = cfg.model_dump(mode="json")
        changed = sorted(
            k for k in ours.keys() - RESUMABLE_CHANGES if ours[k] != ckpt["config"].get(k)
        )
        if changed:
            raise ValueError(
                f"{path} was written with a different config ({', '.join(changed)}); "
                "use a new run directory"
            )
    for name in ("g", "d", "g_ema", "opt_g", "opt_d"):
        getattr(state, name).load_state_dict(ckpt[name])
    state.step = int(ckpt["step"])


def load_weights(source: Path, state: State) -> None:
    """Start from another run's checkpoint, or a published version's TorchScript weights."""
    if source.is_dir():
        g = torch.jit.load(str(source / "generator.pt"), map_location="cpu").state_dict()
        d = torch.jit.load(str(source / "discriminator.pt"), map_location="cpu").state_dict()
    else:
        ckpt = torch.load(source, map_location="cpu", weights_only=True)
        g, d = ckpt["g_ema"], ckpt["d"]
    state.g.load_state_dict(g)
    state.g_ema.load_state_dict(g)
    state.d.load_state_dict(d)


def save_checkpoint(path: Path, state: State, cfg: TrainConfig, dataset: Dataset) -> None:
    # Serialised in memory, written by Python: a full disk is an OSError with its errno (torch's
    # own file writer reports none), and the old checkpoint stays whole.
    buffer = io.BytesIO()
    torch.save(state.state_dict(cfg, dataset), buffer)
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} while writing the checkpoint", str(path)) from e


def _schedule(cfg: TrainConfig, state: State) -> None:
    """The paper's schedule: exponential lr decay and a linear momentum ramp (SGD)."""
    o = cfg.optimizer
    decay = o.lr_decay**state.step
    ramp = min(1.0, state.step / o.momentum_ramp_steps) if o.momentum_ramp_steps else 1.0
    for opt, lr in ((state.opt_g, o.lr_g), (state.opt_d, o.lr_d)):
        for group in opt.param_groups:
            group["lr"] = max(o.lr_min, lr * decay)
            if o.name == "sgd" and o.momentum_final is not None:
                group["momentum"] = o.momentum + (o.momentum_final - o.momentum) * ramp


def _update_ema(state: State, decay: float) -> None:
    # Warm-up so early EMA weights are not dominated by the random init.
    d = min(decay, (1 + state.step) / (10 + state.step))
    with torch.no_grad():
        for p_ema, p in zip(state.g_ema.parameters(), state.g.parameters(), strict=True):
            p_ema.lerp_(p, 1 - d)
        for b_ema, b in zip(state.g_ema.buffers(), state.g.buffers(), strict=True):
            b_ema.copy_(b)


class Batches:
    """Real minibatch number b: a seeded permutation per epoch, so any b is reproducible."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int) -> None:
        self.images = torch.from_numpy(dataset.images)
        self.labels = torch.from_numpy(dataset.labels)
        self.batch_size = min(batch_size, len(self.labels))
        self.per_epoch = len(self.labels) // self.batch_size
        self.seed = seed
        self._epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def get(self, b: int) -> tuple[Tensor, Tensor, int]:
        epoch, i = divmod(b, self.per_epoch)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.labels))
            self._epoch = epoch
        idx = torch.from_numpy(self._perm[i * self.batch_size : (i + 1) * self.batch_size])
        return self.images[idx], self.labels[idx], epoch


def _generator_labels(cfg: TrainConfig, n: int, num_classes: int, gen: torch.Generator) -> Tensor:
    if not cfg.conditional:
        return torch.zeros(n, dtype=torch.long)  # ignored by unconditional networks
    return torch.randint(0, num_classes, (n,), generator=gen)


def _call(net: nn.Module, x: Tensor, labels: Tensor, conditional: bool) -> Tensor:
    return net(x, labels) if conditional else net(x)


def train_step(cfg: TrainConfig, state: State, batches: Batches, num_classes: int) -> Event:
    """k discriminator steps, then one generator step (Algorithm 1 of the paper)."""
    _schedule(cfg, state)
    torch.manual_seed(step_seed(cfg.seed, state.step, 1))  # dropout
    # Draws come from a CPU generator and move to the device: the same z and labels anywhere.
    gen = torch.Generator().manual_seed(step_seed(cfg.seed, state.step, 2))
    dev = next(state.g.parameters()).device
    cond = cfg.conditional
    state.g.train()
    state.d.train()
    bs = batches.batch_size

    def draw() -> tuple[Tensor, Tensor]:
        z = sample_latent(cfg, bs, gen)
        return z.to(dev), _generator_labels(cfg, bs, num_classes, gen).to(dev)

    for j in range(cfg.d_steps):
        real_u8, real_labels, epoch = batches.get(state.step * cfg.d_steps + j)
        real = to_model_range(real_u8.to(dev), cfg)  # [N, C, H, W]
        real_labels = real_labels.to(dev)
        z, fake_labels = draw()
        with torch.no_grad():
            fake = _call(state.g, z, fake_labels, cond)
        real.requires_grad_(cfg.r1_gamma > 0)
        real_logit = _call(state.d, real, real_labels, cond)
        fake_logit = _call(state.d, fake, fake_labels, cond)
        loss_d = losses.d_loss(cfg.loss, real_logit, fake_logit)
        if cfg.r1_gamma > 0:
            loss_d = loss_d + cfg.r1_gamma / 2 * losses.r1_penalty(real_logit, real)
        state.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        state.opt_d.step()

    z, fake_labels = draw()
    fake = _call(state.g, z, fake_labels, cond)
    fake_logit = _call(state.d, fake, fake_labels, cond)
    loss_g = losses.g_loss(cfg.loss, fake_logit)
    state.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.opt_g.step()
    if cfg.ema_decay > 0:
        _update_ema(state, cfg.ema_decay)
    state.step += 1
    return {
        "epoch": epoch,
        "loss_d": float(loss_d.detach()),
        "loss_g": float(loss_g.detach()),
        "d_real": float(torch.sigmoid(real_logit.detach()).mean()),
        "d_fake": float(torch.sigmoid(fake_logit.detach()).mean()),
    }


def serving_generator(cfg: TrainConfig, state: State) -> networks.Generator:
    """The weights to sample from: the EMA when enabled."""
    return state.g_ema if cfg.ema_decay > 0 else state.g


@torch.no_grad()
def generate(
    cfg: TrainConfig, g: nn.Module, seeds: np.ndarray, labels: np.ndarray | None
) -> np.ndarray:
    """Images for seeds as uint8 [N, H, W, C], drawing z exactly as the service does."""
    g.eval()
    dev = next(g.parameters()).device
    out = []
    for start in range(0, len(seeds), 500):
        chunk = seeds[start : start + 500].tolist()
        z = torch.from_numpy(latent.latents(chunk, cfg.latent_dim, cfg.prior)).to(dev)
        y = torch.from_numpy(labels[start : start + 500]).to(dev) if labels is not None else None
        x = g(z, y) if cfg.conditional else g(z)
        out.append(imaging.to_uint8(x.cpu().numpy(), cfg.output_range))
    return np.concatenate(out)


def samples_grid(cfg: TrainConfig, g: nn.Module, num_classes: int) -> bytes:
    """A 10x10 PNG grid; conditional models get one row per class."""
    labels = (
        np.repeat(np.arange(10) % num_classes, 10).astype(np.int64) if cfg.conditional else None
    )
    images = generate(cfg, g, np.arange(100), labels)  # seeds 0..99, as /v1/sample names them
    return imaging.encode_png(imaging.grid(images, cols=10))


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    evaluate: Callable[[nn.Module], dict[str, Any]] | None = None,
    init_from: Path | None = None,
    device: str = "cpu",
) -> RunResult:
    """Train until ``cfg.max_steps``, resuming from ``run_dir/checkpoint.pt`` when present.

    ``init_from`` is a checkpoint or a published version folder to fine-tune from (its
    weights, not its step or optimiser state). ``device`` is where the networks train
    (``"cuda"``); checkpoints hold CPU-loadable tensors either way. ``evaluate``
    maps the serving generator to metrics each ``eval_every`` steps. A stop requested by
    ``should_stop`` ends at a step boundary with a checkpoint written.
    """
    run_dir = Path(run_dir)
    files = RunFiles(run_dir)
    files.sample_history.mkdir(parents=True, exist_ok=True)
    dataset, _ = load_dataset(cfg.dataset.source).split(
        cfg.dataset.val_fraction, cfg.dataset.split_seed
    )
    if cfg.select == "best" and evaluate is None:
        raise ValueError('select = "best" chooses between evaluations: evaluation must be on')
    state = build_state(cfg, dataset, device)
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists():
        load_checkpoint(ckpt_path, state, cfg)
        best = Best.read(run_dir / BEST)
    else:
        (run_dir / BEST).unlink(missing_ok=True)  # an earlier run's, in a reused folder
        best = None
        if init_from is not None:
            load_weights(init_from, state)
    files.config.write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    emit = _emitter(run_dir, progress)
    emit({"event": EventType.START, "step": state.step, "max_steps": cfg.max_steps})

    batches = Batches(dataset, cfg.batch_size, cfg.seed)
    t0, step0 = time.perf_counter(), state.step
    metrics: dict[str, Any] = {}
    while state.step < cfg.max_steps:
        if should_stop is not None and should_stop():
            save_checkpoint(ckpt_path, state, cfg, dataset)
            emit({"event": EventType.STOPPED, "step": state.step, "max_steps": cfg.max_steps})
            return RunResult("stopped", state.step, run_dir, metrics)
        stats = train_step(cfg, state, batches, dataset.num_classes)
        done = state.step == cfg.max_steps
        if state.step % cfg.log_every == 0 or done:
            elapsed = time.perf_counter() - t0
            rate = (state.step - step0) / elapsed if elapsed > 0 else 0.0
            emit(
                {
                    "event": EventType.PROGRESS,
                    "step": state.step,
                    "max_steps": cfg.max_steps,
                    **stats,
                    "images_per_s": rate * batches.batch_size * (1 + cfg.d_steps),
                    "eta_s": (cfg.max_steps - state.step) / rate if rate else None,
                }
            )
        # Evaluate before checkpointing: a run resumed from this step has kept its best.
        if state.step % cfg.eval_every == 0 or done:
            g = serving_generator(cfg, state)
            grid = samples_grid(cfg, g, dataset.num_classes)
            (files.sample_history / f"step-{state.step:07d}.png").write_bytes(grid)
            write_atomic(files.samples, grid)
            metrics = evaluate(g) if evaluate is not None else {}
            event: Event = {"event": EventType.EVALUATION, "step": state.step, "metrics": metrics}
            if cfg.select == "best":
                best = _keep_if_best(run_dir / BEST, state, g, metrics, best)
                event["best_step"] = best.step
            emit(event)
        if state.step % cfg.checkpoint_every == 0 or done:
            save_checkpoint(ckpt_path, state, cfg, dataset)
    emit({"event": EventType.COMPLETED, "step": state.step, "max_steps": cfg.max_steps})
    return RunResult("completed", state.step, run_dir, metrics)


@dataclass(frozen=True)
class Best:
    """The evaluation kept by ``select = "best"``: its step and its FID against training data."""

    step: int
    fid_train: float

    @staticmethod
    def of(kept: dict[str, Any]) -> Best:
        return Best(int(kept["step"]), float(kept["fid_train"]))

    @staticmethod
    def read(path: Path) -> Best | None:
        return Best.of(_load_kept(path)) if path.exists() else None


def _load_kept(path: Path) -> dict[str, Any]:
    kept: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return kept


def _keep_if_best(
    path: Path, state: State, g: nn.Module, metrics: dict[str, Any], best: Best | None
) -> Best:
    """Write the serving generator and D to ``path`` when this evaluation beats ``best``."""
    score = metrics.get("fid_train")
    if score is None:
        raise ValueError(
            'select = "best" needs fid_train, which only the digits classifier computes'
        )
    if best is not None and score >= best.fid_train:
        return best
    buffer = io.BytesIO()
    kept = {"step": state.step, "fid_train": score, "g": g.state_dict(), "d": state.d.state_dict()}
    torch.save(kept, buffer)
    write_atomic(path, buffer.getvalue())
    return Best(state.step, score)


def load_best(path: Path, cfg: TrainConfig, state: State) -> Best:
    """Put the kept evaluation's weights into ``state``'s serving generator and D."""
    if not path.exists():
        raise FileNotFoundError(f'{path} is missing: a select = "best" run keeps it')
    kept = _load_kept(path)
    serving_generator(cfg, state).load_state_dict(kept["g"])
    state.d.load_state_dict(kept["d"])
    return Best.of(kept)


def _emitter(run_dir: Path, progress: ProgressFn | None) -> ProgressFn:
    def emit(event: Event) -> None:
        event = {"time": time.time(), **event}
        with open(RunFiles(run_dir).stats, "a") as f:
            f.write(encode(event) + "\n")
        if progress is not None:
            progress(event)

    return emit
