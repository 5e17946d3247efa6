"""The training-job schema: what the CLI parses, the jobs API validates and the manifest records.

Pure pydantic (no torch), so the web service can validate a job without loading torch. Every
number is finite and bounded. One schema, two trust levels: the CLI may train on any local
dataset path; a config validated with ``context=REMOTE`` (the jobs API's) may name built-in
data only, as a client must not point training at files on the server (the service itself
then sets an uploaded dataset's path, after validation).

    >>> cfg = load_config("training/configs/paper.toml", ["max_steps=200"])
    >>> cfg.max_steps
    200
    >>> load_config("training/configs/paper.toml", {"dataset.source": "/etc"}, context=REMOTE)
    Traceback (most recent call last):
    pydantic_core._pydantic_core.ValidationError: 1 validation error for TrainConfig
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

CONFIGS_DIR = Path(__file__).parent / "configs"
BUILTIN_RE = re.compile(r"builtin:[a-z0-9][a-z0-9_-]{0,63}")  # "builtin:mnist": no path in it
# The validation context of a config from a remote client: built-in datasets only.
REMOTE: dict[str, Any] = {"local_paths": False}
MAX_STEPS = 10_000_000  # also the bound of every interval counted in steps

Architecture = Literal["paper-mlp", "dcgan"]
Loss = Literal["minimax", "non-saturating", "hinge"]


class _Strict(BaseModel):
    # allow_inf_nan: JSON's Infinity passes ge=0 and is written back as null.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatasetConfig(_Strict):
    # "builtin:mnist", or a path to an .npz, an image folder (one sub-folder per class),
    # or an IDX images file (labels next to it, found by name).
    source: str = Field("builtin:mnist", max_length=4096)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    split_seed: int = Field(0, ge=0, lt=2**63)

    @field_validator("source")
    @classmethod
    def _local_paths(cls, source: str, info: ValidationInfo) -> str:
        if (info.context or {}).get("local_paths", True) or BUILTIN_RE.fullmatch(source):
            return source
        raise ValueError(
            "a job trains on built-in data (builtin:mnist) or an uploaded dataset, given by "
            "its id in the job's 'dataset' field; paths on the server are refused"
        )


class NetworkConfig(_Strict):
    # paper-mlp: the sizes of the 2014 release (adversarial/mnist.yaml).
    g_hidden: int = Field(1200, ge=8, le=8192)
    d_hidden: int = Field(240, ge=8, le=8192)
    maxout_pieces: int = Field(5, ge=1, le=16)
    d_input_dropout: float = Field(0.2, ge=0, lt=1)
    d_dropout: float = Field(0.5, ge=0, lt=1)
    # dcgan: channel width of the last G layer and first D layer.
    width: int = Field(64, ge=4, le=1024)
    label_dim: int = Field(16, ge=1, le=1024)


class OptimizerConfig(_Strict):
    name: Literal["sgd", "adam"] = "adam"
    lr_g: float = Field(2e-4, gt=0, le=10)
    lr_d: float = Field(2e-4, gt=0, le=10)
    # SGD: momentum, ramped linearly to momentum_final over momentum_ramp_steps (the paper).
    momentum: float = Field(0.5, ge=0, lt=1)
    momentum_final: float | None = Field(None, ge=0, lt=1)
    momentum_ramp_steps: int = Field(0, ge=0, le=MAX_STEPS)
    # Multiplied into both learning rates after every step (the paper: 1 / 1.000004).
    lr_decay: float = Field(1.0, gt=0.9, le=1.0)
    lr_min: float = Field(0.0, ge=0, le=10)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)

    @model_validator(mode="after")
    def _floor(self) -> OptimizerConfig:
        if self.lr_min > min(self.lr_g, self.lr_d):
            raise ValueError(f"lr_min={self.lr_min} is above a learning rate: it would raise it")
        return self


class UsefulnessConfig(_Strict):
    # The usefulness scores of a published version (training/usefulness.py): PRDC's
    # neighbourhood, and the budget of the small classifiers behind CAS and NAS.
    k: int = Field(5, ge=1, le=50, description="PRDC: the k-th nearest neighbour sets a radius")
    classifier_steps: int = Field(
        1000, ge=1, le=20_000, description="CAS, NAS: steps of each small classifier's training"
    )
    classifier_batch: int = Field(64, ge=1, le=1024)
    seed: int = Field(0, ge=0, lt=2**63, description="the classifiers' and NAS's subset's seed")
    nas_fraction: float = Field(
        0.1, gt=0, le=1, description="NAS: the share of the training split that stays real"
    )


class TrainConfig(_Strict):
    architecture: Architecture = "paper-mlp"
    conditional: bool = False
    latent_dim: int = Field(100, ge=1, le=4096)
    prior: Literal["normal", "uniform"] = "normal"
    dataset: DatasetConfig = DatasetConfig()
    network: NetworkConfig = NetworkConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    loss: Loss = "non-saturating"
    max_steps: int = Field(1000, ge=1, le=MAX_STEPS)
    batch_size: int = Field(64, ge=1, le=4096)
    d_steps: int = Field(1, ge=1, le=100, description="k: discriminator steps per generator step")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="0 disables the generator EMA")
    r1_gamma: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="R1 penalty (Mescheder et al. 2018): gamma/2 * E|grad D(real)|^2 in D's loss",
    )
    seed: int = Field(0, ge=0, lt=2**63)
    eval_every: int = Field(
        1000, ge=1, le=MAX_STEPS, description="steps between evaluations (and grids)"
    )
    eval_samples: int = Field(2000, ge=100, le=50_000)
    usefulness: UsefulnessConfig = UsefulnessConfig()
    select: Literal["last", "best"] = Field(
        "last",
        description="weights to publish: the last step's, or those of the evaluation with the "
        "lowest FID against the training split (never the held-out split the figures use)",
    )
    checkpoint_every: int = Field(500, ge=1, le=MAX_STEPS)
    log_every: int = Field(50, ge=1, le=MAX_STEPS)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.optimizer.momentum_final is not None and self.optimizer.name != "sgd":
            raise ValueError("momentum_final applies to the sgd optimizer only")
        return self

    @property
    def output_range(self) -> tuple[float, float]:
        # The paper's sigmoid generator lives in [0, 1]; DCGAN's tanh in [-1, 1].
        return (0.0, 1.0) if self.architecture == "paper-mlp" else (-1.0, 1.0)

    @property
    def architecture_name(self) -> str:
        return ("c" if self.conditional else "") + self.architecture


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    if name not in preset_names():
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(preset_names())}")
    return CONFIGS_DIR / f"{name}.toml"


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML would read it; a bare word stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``optimizer.lr_g``) in a nested dict, returning a new dict."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[leaf] = value
    return out


def load_config(
    path: str | Path,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    context: dict[str, Any] | None = None,
) -> TrainConfig:
    """Read a TOML preset (or a JSON config) and apply ``key=value`` (or dict) overrides;
    ``context=REMOTE`` for a config from a remote client."""
    path = Path(path)
    with open(path, "rb") as f:
        data = json.load(f) if path.suffix == ".json" else tomllib.load(f)
    pairs = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    return TrainConfig.model_validate(apply_overrides(data, pairs), context=context)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings (``--set``) as dotted keys and values as TOML reads them."""
    pairs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        pairs[key.strip()] = parse_value(value.strip())
    return pairs
