"""What an export holds: which seed and which label every image gets, shard by shard.

An export is a pinned version, a seed range and a label rule, so every image in it is one that
``/v1/sample`` also draws: image ``i`` uses seed ``seed + i`` with the label the rule gives it,
and ``{"model", "version", "seeds": [seed + i], "labels": label}`` redraws it byte for byte.

Label rules (conditional models only):
- none given: ``label = seed mod num_classes``, the ``/v1/sample`` default (uniform, exact);
- ``label``: one class for every image;
- ``label_mix``: a weight per class. Each shard holds the classes in exactly these proportions
  (largest remainders), in an order shuffled by ``default_rng([seed, shard])``, so any shard
  can be remade alone and a resumed export matches an uninterrupted one.

    >>> spec = ExportSpec(model="mnist-cdcgan", version=3, n=25_000, shard_size=10_000)
    >>> [shard_range(spec, i) for i in range(shard_count(spec))]
    [(0, 10000), (10000, 10000), (20000, 5000)]
"""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.latent import MAX_SEED

ShardFormat = Literal["npz", "tar"]
MAX_SHARDS = 1_000_000  # shard names have six digits


class ExportSpec(BaseModel):
    """A validated export: what the job record shows and the export process runs."""

    model_config = ConfigDict(extra="forbid")

    model: str
    version: int = Field(ge=1, description="pinned at submission: an alias is resolved then")
    n: int = Field(ge=1, description="images in the export")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="image i uses seed + i")
    label: int | None = Field(None, ge=0, description="one class for every image")
    label_mix: list[float] | None = Field(
        None, min_length=1, description="a weight per class: each shard holds these proportions"
    )
    truncation: float | None = Field(None, gt=0)
    format: ShardFormat = Field(
        "npz", description="npz: uint8 arrays (the default); tar: WebDataset PNG + label"
    )
    shard_size: int = Field(10_000, ge=1, le=100_000, description="images per shard")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.label is not None and self.label_mix is not None:
            raise ValueError("give label or label_mix, not both")
        if self.seed + self.n - 1 > MAX_SEED:
            raise ValueError(f"seed + n - 1 must not exceed {MAX_SEED}")
        if shard_count(self) > MAX_SHARDS:
            raise ValueError(f"more than {MAX_SHARDS} shards: raise shard_size")
        if self.label_mix is not None:
            mix = np.asarray(self.label_mix)
            if not np.all(np.isfinite(mix)) or np.any(mix < 0) or mix.sum() <= 0:
                raise ValueError("label_mix weights must be finite, non-negative, not all zero")
        return self


def shard_count(spec: ExportSpec) -> int:
    return -(-spec.n // spec.shard_size)


def shard_range(spec: ExportSpec, index: int) -> tuple[int, int]:
    """(first seed, image count) of shard ``index``."""
    start = index * spec.shard_size
    return spec.seed + start, min(spec.shard_size, spec.n - start)


def shard_name(spec: ExportSpec, index: int) -> str:
    return f"shard-{index:06d}.{spec.format}"


def shard_labels(spec: ExportSpec, num_classes: int, index: int) -> np.ndarray | None:
    """The labels of shard ``index``'s images, int64, or None for an unconditional model."""
    if not num_classes:
        return None
    first, count = shard_range(spec, index)
    if spec.label is not None:
        return np.full(count, spec.label, dtype=np.int64)
    if spec.label_mix is None:
        return (np.arange(first, first + count, dtype=np.uint64) % num_classes).astype(np.int64)
    weights = np.asarray(spec.label_mix, dtype=np.float64)
    quota = weights / weights.sum() * count
    counts = np.floor(quota).astype(np.int64)
    short = count - int(counts.sum())
    counts[np.argsort(-(quota - counts), kind="stable")[:short]] += 1  # largest remainders
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), counts)
    return np.random.default_rng([spec.seed, index]).permutation(labels)


def check_for_model(spec: ExportSpec, num_classes: int) -> str | None:
    """Why this spec cannot run on a model with ``num_classes`` classes, or None."""
    if not num_classes and (spec.label is not None or spec.label_mix is not None):
        return "the model is unconditional: omit label and label_mix"
    if spec.label is not None and spec.label >= num_classes:
        return f"label must lie in 0..{num_classes - 1}"
    if spec.label_mix is not None and len(spec.label_mix) != num_classes:
        return f"label_mix needs one weight per class: {num_classes}"
    return None
