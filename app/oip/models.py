"""Which models the inference protocol serves, and what each takes and returns.

Every model in the repository is three models here:

    <model>                z FP32 [-1, latent_dim] (, label INT64 [-1]) -> image FP32 [-1, C, H, W]
    <model>.discriminator  image FP32 [-1, C, H, W] (, label INT64 [-1]) -> logit FP32 [-1, 1]
    <model>.seeded         seed INT64 [-1] (, label INT64 [-1], truncation FP32 [-1])
                           -> image UINT8 [-1, H, W, C], what /v1/sample returns as npy

``label`` is required for conditional models' generator and discriminator, optional for the
seeded model (default: seed mod num_classes), and absent for unconditional models. A name that
is itself a model in the repository means that model's generator, whatever its suffix.

    >>> model = find("mnist-cdcgan.seeded", pool.names())  # V2Model(..., "mnist-cdcgan", "seeded")
    >>> [spec.name for spec in inputs(model.kind, manifest)]
    ['seed', 'label', 'truncation']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.oip.tensors import DATATYPES, datatype
from app.serving.runtime import has_discriminator
from app.settings import Settings
from core.errors import BadRequest, LimitExceeded, NotFound
from core.repository import Manifest

Kind = Literal["generator", "discriminator", "seeded"]
SUFFIXES: dict[str, Kind] = {".discriminator": "discriminator", ".seeded": "seeded"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: the batch axis
    optional: bool = False

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def config(self) -> dict[str, Any]:
        # Triton's model configuration: dims without the batch axis; a tensor of one value per
        # row is declared [1] and reshaped to [].
        dims = list(self.shape[1:]) or [1]
        entry: dict[str, Any] = {"name": self.name, "data_type": f"TYPE_{self.datatype}"}
        entry["dims"] = dims
        if len(self.shape) == 1:
            entry["reshape"] = {"shape": []}
        if self.optional:
            entry["optional"] = True
        return entry


@dataclass(frozen=True)
class V2Model:
    """A repository model (``base``) as one of the protocol's models (``name``)."""

    name: str
    base: str
    kind: Kind


def find(name: str, known: list[str]) -> V2Model:
    if name in known:
        return V2Model(name, name, "generator")
    for suffix, kind in SUFFIXES.items():
        base = name.removesuffix(suffix)
        if base != name and base in known:
            return V2Model(name, base, kind)
    names = ", ".join(f"{m}, {m}.discriminator, {m}.seeded" for m in known) or "none"
    raise NotFound(f"no model named {name[:80]!r}; models: {names}")


def inputs(kind: Kind, m: Manifest) -> list[TensorSpec]:
    c, h, w = m.image_shape
    label = [TensorSpec("label", "INT64", (-1,), optional=kind == "seeded")]
    if not m.conditional:
        label = []
    if kind == "generator":
        return [TensorSpec("z", "FP32", (-1, m.latent.dim)), *label]
    if kind == "discriminator":
        return [TensorSpec("image", "FP32", (-1, c, h, w)), *label]
    return [
        TensorSpec("seed", "INT64", (-1,)),
        *label,
        TensorSpec("truncation", "FP32", (-1,), optional=True),
    ]


def outputs(kind: Kind, m: Manifest) -> list[TensorSpec]:
    c, h, w = m.image_shape
    if kind == "generator":
        return [TensorSpec("image", "FP32", (-1, c, h, w))]
    if kind == "discriminator":
        return [TensorSpec("logit", "FP32", (-1, 1))]
    return [TensorSpec("image", "UINT8", (-1, h, w, c))]


def max_batch(kind: Kind, settings: Settings) -> int:
    """Rows per request: images per /v1/discriminate for D, per /v1/sample otherwise."""
    return settings.max_files if kind == "discriminator" else settings.max_n


def check_served(model: V2Model, m: Manifest) -> None:
    if model.kind == "discriminator" and not has_discriminator(m):
        raise NotFound(f"{m.name} v{m.version} has no discriminator")


def metadata(
    model: V2Model, m: Manifest, versions: list[int], settings: Settings
) -> dict[str, Any]:
    check_served(model, m)
    return {
        "name": model.name,
        "versions": [str(v) for v in versions],
        "platform": _platform(model.kind, m, settings),
        "inputs": [spec.metadata() for spec in inputs(model.kind, m)],
        "outputs": [spec.metadata() for spec in outputs(model.kind, m)],
    }


def config(model: V2Model, m: Manifest, settings: Settings) -> dict[str, Any]:
    check_served(model, m)
    platform = _platform(model.kind, m, settings)
    return {
        "name": model.name,
        "platform": platform,
        "backend": platform.partition("_")[0],
        "version_policy": {"specific": {"versions": [m.version]}},
        "max_batch_size": max_batch(model.kind, settings),
        "input": [spec.config() for spec in inputs(model.kind, m)],
        "output": [spec.config() for spec in outputs(model.kind, m)],
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(settings.max_delay_ms * 1000),
            "preferred_batch_size": [settings.max_batch],
        },
        "parameters": {
            "output_range": {"string_value": ",".join(map(str, m.output_range))},
            "num_classes": {"string_value": str(m.num_classes)},
        },
    }


def check_inputs(
    model: V2Model, specs: list[TensorSpec], given: dict[str, np.ndarray], limit: int
) -> int:
    """The batch size of inputs that match ``specs``; BadRequest (LimitExceeded) otherwise."""
    wanted = {spec.name for spec in specs}
    for name in given:
        if name not in wanted:
            raise BadRequest(
                f"{model.name} has no input {name[:80]!r}; its inputs: {', '.join(wanted)}"
            )
    rows: int | None = None
    for spec in specs:
        array = given.get(spec.name)
        if array is None:
            if not spec.optional:
                raise BadRequest(f"{model.name} needs input {spec.name!r}")
            continue
        if array.dtype != DATATYPES[spec.datatype]:
            raise BadRequest(f"input {spec.name!r} must be {spec.datatype}, got {datatype(array)}")
        if array.ndim != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
        ):
            raise BadRequest(
                f"input {spec.name!r} must have shape {list(spec.shape)}, got {list(array.shape)}"
            )
        if rows is not None and array.shape[0] != rows:
            raise BadRequest(f"input {spec.name!r} has {array.shape[0]} rows, another {rows}")
        rows = array.shape[0]
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise BadRequest(f"input {spec.name!r} holds NaN or infinity")
    assert rows is not None  # every model has a required input
    if rows == 0:
        raise BadRequest("the batch is empty: send at least one row")
    if rows > limit:
        raise LimitExceeded(f"a batch of {rows} rows is over the limit of {limit}")
    return rows


def _platform(kind: Kind, m: Manifest, settings: Settings) -> str:
    if kind == "seeded":
        return "gan-serve_seeded"  # latents drawn from seeds, the generator, then pixels
    torchscript = settings.backend == "torchscript" or m.artifact("generator", "onnx") is None
    return "pytorch_libtorch" if torchscript else "onnxruntime_onnx"
