"""Runtimes behind one interface: everything above this module sees numpy arrays.

``OnnxEngine`` runs ONNX Runtime (CUDA when available and asked for, else CPU);
``TorchScriptEngine`` runs a TorchScript file and imports torch only when constructed, so the
ONNX path never loads torch.

    >>> engine = load_engine(folder, manifest, "generator", settings)
    >>> images = engine.run({"z": z})   # float32 [N, C, H, W]
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.settings import Settings
from core.errors import IntegrityError
from core.repository import Manifest

log = logging.getLogger(__name__)


class Engine(Protocol):
    device: str
    input_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


class OnnxEngine:
    def __init__(self, path: Path, *, device: str, threads: int = 0, spinning: bool = True) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "cuda":
            log.warning("GAN_DEVICE=cuda but ONNX Runtime has no CUDA provider; using the CPU")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        # Spinning threads start each parallel op sooner (big batches gain about a third on
        # 2 CPUs) but keep cores busy between runs, which a CPU shared with others may not afford.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # ORT raises its own untyped errors for unloadable graphs
            raise IntegrityError(f"{path.name}: ONNX Runtime cannot load it: {e}") from e
        self.device = "cuda" if self.session.get_providers()[0].startswith("CUDA") else "cpu"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        out: np.ndarray = self.session.run([self.output_name], inputs)[0]
        return out


class TorchScriptEngine:
    def __init__(self, path: Path, *, device: str, input_names: list[str]) -> None:
        import torch

        self._torch = torch
        use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
        self.device = "cuda" if use_cuda else "cpu"
        try:
            self.module: Any = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as e:
            raise IntegrityError(f"{path.name}: torch cannot load it: {e}") from e
        self.input_names = input_names

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        args = [torch.from_numpy(inputs[name]).to(self.device) for name in self.input_names]
        with torch.inference_mode():
            out: np.ndarray = self.module(*args).cpu().numpy()
        return out


def available_cpus() -> int:
    """CPUs this process may use: its affinity, bounded by a cgroup v2 CPU quota (a container's
    ``--cpus``), at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus or 1, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota: the affinity mask is the bound
    return max(1, cpus or 1)


class BySize:
    """Two sessions of one graph: small batches on a few threads, big ones on every core.

    Under many small requests the event loop needs a core of its own, and ONNX Runtime threads
    would compete with it; a big request leaves the loop idle while it runs, and one thread
    short of every core costs it about a third (README, Benchmarks).

        >>> engine = BySize(small, big, big_from=256)
        >>> engine.run({"z": z})   # big's session when z has 256 rows or more
    """

    def __init__(self, small: Engine, big: Engine, *, big_from: int) -> None:
        self.small, self.big, self.big_from = small, big, big_from
        self.device = small.device
        self.input_names = small.input_names

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(next(iter(inputs.values())))
        return (self.big if rows >= self.big_from else self.small).run(inputs)


def load_engine(folder: Path, manifest: Manifest, role: str, settings: Settings) -> Engine:
    """The engine for a role ("generator" | "discriminator") of a verified version."""
    onnx_file = manifest.artifact(role, "onnx")
    pt_file = manifest.artifact(role, "pt")
    backend = settings.backend
    if backend == "auto":
        backend = "onnx" if onnx_file else "torchscript"
    if backend == "onnx" and onnx_file:
        cpus = available_cpus()

        def session(threads: int) -> OnnxEngine:
            spinning = settings.ort_spinning
            return OnnxEngine(
                folder / onnx_file, device=settings.device, threads=threads, spinning=spinning
            )

        small = settings.intra_op_threads or max(1, cpus - 1)
        big = settings.big_batch_threads or cpus
        engine = session(small)
        if engine.device == "cuda" or big == small:
            return engine  # on a GPU, CPU threads only feed it
        return BySize(engine, session(big), big_from=settings.big_batch_rows)
    if backend == "torchscript" and pt_file:
        names = manifest.tensors[role]["inputs"]
        return TorchScriptEngine(folder / pt_file, device=settings.device, input_names=names)
    raise IntegrityError(f"{manifest.name} v{manifest.version} has no {backend} {role}")
