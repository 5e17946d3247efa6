"""Projection (GAN inversion): the latent, and label, whose image is closest to a given one.

Derivative-free, on the generator the server already runs (no torch, no gradients):

1. a bank of latents per loaded version, drawn from a fixed seed and generated once (then
   cached), gives each image its starts: its ``restarts`` nearest bank images, or, for a
   conditional model asked to find the label too, the nearest bank image of each of the
   ``restarts`` best labels;
2. a (mu/mu_w, lambda) evolution strategy (weighted recombination of the best quarter) refines
   every start at once: each step is one engine call of images x restarts x ``POPULATION``
   latents, and the best latent seen, the start included, is the answer. Its step size
   shrinks geometrically from ``SIGMA0`` to ``SIGMA_END`` over the budget's steps: on 100
   held-out digits (mnist-gan, 40 steps of 64) that reached a mean distance of 0.0201 where
   cumulative step-size adaptation (Hansen and Ostermeier, 2001) reached 0.0231, as its
   adaptation is slow in 100 dimensions for so few steps.

Distances: ``pixel``, the mean squared difference of pixels in [0, 1]; ``features``, the mean
squared difference of the project's own classifier's features (the space FID is measured in),
for models whose manifest records evaluations under that classifier.

The answer's image is generated again from its float32 latent, so ``/v1/interpolate`` (or the
v2 generator) given that latent reproduces it byte for byte. Measured with ``make bench``
(``benchmarks/projection.py``; README, Projection).

    >>> projector = Projector(settings)
    >>> out = await projector.project(model, pixels, labels=None, budget=Budget(80, 1))
    >>> out.latents[0], out.labels, out.distances  # float32 [dim]; int64 [N] or None; [N]
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from app.serving.engine import OnnxEngine, available_cpus
from app.serving.generation import resolve_labels
from app.serving.pool import LoadedModel
from app.settings import Settings
from core import latent
from core.errors import InvalidInput, LimitExceeded
from core.repository import Manifest

Distance = Literal["pixel", "features"]
GenerateFn = Callable[[np.ndarray, np.ndarray | None], Awaitable[np.ndarray]]
EmbedFn = Callable[[np.ndarray], Awaitable[np.ndarray]]

# Chosen on 100 held-out digits (README, Projection): for a given number of engine rows, 16
# latents for more steps did as well as 32 or 64 for fewer, and 1 start as well as 2.
POPULATION = 16  # latents per start per step
SIGMA0 = 0.5  # first step size, in units of the prior's standard deviation (1 for both)
SIGMA_END = 0.05  # last step size
BANK_SEED = 20141  # the bank's latents: one fixed draw, so a version's bank is always the same
CLASSIFIER_SHAPE = [1, 28, 28]  # what the project's classifier takes (training/classifier.py)
_UNIFORM_BOUND = math.sqrt(3.0)


@dataclass(frozen=True)
class Budget:
    """Steps of the evolution strategy, and starts refined side by side for each image."""

    steps: int
    restarts: int
    population: int = POPULATION

    def rows(self, images: int) -> int:
        """Generator rows the search runs for ``images`` images (the final render aside)."""
        return images * self.restarts * self.population * self.steps


@dataclass(frozen=True)
class Bank:
    """A version's latents, their labels and images, what a row cost to generate here, and
    the images in each distance's space (filled on a distance's first use, with its cost)."""

    z: np.ndarray  # float32 [B, dim]
    labels: np.ndarray | None  # int64 [B]
    pixels: np.ndarray  # uint8 [B, H, W, C]
    seconds_per_row: float
    embeddings: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)

    async def embedded(self, distance: Distance, embed: EmbedFn) -> tuple[np.ndarray, float]:
        """(the bank's images in ``distance``'s space [B, D], seconds a row costs to embed)."""
        if distance not in self.embeddings:
            began = time.perf_counter()
            embeddings = await embed(self.pixels)
            self.embeddings[distance] = (
                embeddings,
                (time.perf_counter() - began) / len(embeddings),
            )
        return self.embeddings[distance]


@dataclass(frozen=True)
class Projection:
    latents: np.ndarray  # float32 [N, dim]
    labels: np.ndarray | None  # int64 [N]
    images: np.ndarray  # uint8 [N, H, W, C], generated from ``latents``
    distances: np.ndarray  # float64 [N], between each image and its reconstruction
    steps: int  # steps taken: the budget's, or fewer when the request timeout came first


def has_features(manifest: Manifest) -> bool:
    """Whether the project's classifier fits the model's data: its manifest was evaluated
    under that classifier (28x28 grayscale digits)."""
    return "classifier" in manifest.metrics and manifest.image_shape == CLASSIFIER_SHAPE


class Projector:
    """Projects images onto loaded versions; owns the banks and the feature classifier.

    >>> projector = Projector(settings)
    >>> out = await projector.project(model, pixels, None, Budget(steps=80, restarts=1))
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._banks: OrderedDict[tuple[str, int, str], asyncio.Task[Bank]] = OrderedDict()
        self._classifier: OnnxEngine | None = None

    async def project(
        self,
        model: LoadedModel,
        images: np.ndarray,
        labels: int | list[int] | None,
        budget: Budget,
        distance: Distance = "pixel",
        seed: int = 0,
    ) -> Projection:
        """Latents for uint8 images [N, H, W, C] of the model's shape; ``labels`` (conditional
        models) fixes each image's label, else the search picks it.

        Raises InvalidInput for labels or a distance the model cannot take, and LimitExceeded
        for a budget whose estimated time is over the request timeout.
        """
        m = model.manifest
        y = resolve_labels(m, range(len(images)), labels) if labels is not None else None
        if m.conditional and y is None:  # the labels tried are the restarts: K at most
            budget = replace(budget, restarts=min(budget.restarts, m.num_classes))
        embed = self._embedder(m, distance)
        generate: GenerateFn = self._generator(model)
        bank = await self._bank(model, generate)
        _, embedding = await bank.embedded(distance, embed)
        estimate = budget.rows(len(images)) * (bank.seconds_per_row + embedding)
        if estimate > self.settings.request_timeout_s:
            raise LimitExceeded(
                f"{len(images)} images x {budget.restarts} restarts x {budget.steps} steps "
                f"would take about {estimate:.0f} s here, over the request timeout of "
                f"{self.settings.request_timeout_s:g} s: ask for fewer",
                field="steps",
            )
        deadline = time.monotonic() + self.settings.request_timeout_s - 2 * estimate / budget.steps
        rng = np.random.default_rng(seed)
        return await search(generate, embed, bank, images, y, budget, m, rng, deadline, distance)

    def _generator(self, model: LoadedModel) -> GenerateFn:
        chunk = self.settings.max_batch

        async def generate(z: np.ndarray, y: np.ndarray | None) -> np.ndarray:
            # One batcher request per max_batch rows, in turn: other clients' requests take
            # their place between them, and no request outgrows the batcher's queue.
            parts = []
            for start in range(0, len(z), chunk):
                rows = slice(start, start + chunk)
                parts.append(await model.generate({"z": z[rows]}, None if y is None else y[rows]))
            return np.concatenate(parts)

        return generate

    def _embedder(self, manifest: Manifest, distance: Distance) -> EmbedFn:
        if distance == "pixel":

            async def pixels(images: np.ndarray) -> np.ndarray:
                return await asyncio.to_thread(embed_pixels, images)

            return pixels
        path = self.settings.features_classifier
        if path is None or not path.is_file():
            raise InvalidInput(
                "distance 'features' is off here (no GAN_FEATURES_CLASSIFIER file); use 'pixel'",
                field="distance",
            )
        if not has_features(manifest):
            raise InvalidInput(
                f"distance 'features' needs the project's classifier, which fits 28x28 digits: "
                f"{manifest.name} v{manifest.version} was not evaluated under it; use 'pixel'",
                field="distance",
            )

        def run(images: np.ndarray) -> np.ndarray:
            return embed_features(self._load_classifier(path), images)

        async def features(images: np.ndarray) -> np.ndarray:
            return await asyncio.to_thread(run, images)

        return features

    def _load_classifier(self, path: Path) -> OnnxEngine:
        if self._classifier is None:  # first use; the API image holds the file (Dockerfile)
            # Every core, not spinning: it runs between generator calls, never beside them.
            self._classifier = OnnxEngine(
                path, device="cpu", threads=available_cpus(), spinning=False
            )
        return self._classifier

    async def _bank(self, model: LoadedModel, generate: GenerateFn) -> Bank:
        m = model.manifest
        key = (m.name, m.version, m.created)
        task = self._banks.get(key)
        if task is None or (task.done() and task.exception() is not None):
            # Enough of each label for every restart of an image whose label is given.
            size = max(
                self.settings.project_bank_size, m.num_classes * self.settings.max_project_restarts
            )
            task = asyncio.create_task(build_bank(generate, m, size))
            self._banks[key] = task
            while len(self._banks) > self.settings.project_banks:
                self._banks.popitem(last=False)
        self._banks.move_to_end(key)
        return await asyncio.shield(task)


def embed_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, H*W*C] in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


def embed_features(classifier: OnnxEngine, images: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28, 1] -> the classifier's penultimate features, float32 [N, 128]."""
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
    out: np.ndarray = classifier.session.run(["features"], {"image": x})[0]
    return out


async def build_bank(generate: GenerateFn, manifest: Manifest, size: int) -> Bank:
    """``size`` latents from ``BANK_SEED`` (labels in turn for conditional models) and their
    images, timed: the cost of a row on this machine, for the budget's estimate."""
    z = draw(np.random.default_rng(BANK_SEED), size, manifest.latent.dim, manifest.latent.prior)
    k = manifest.num_classes
    labels = np.arange(size, dtype=np.int64) % k if manifest.conditional else None
    began = time.perf_counter()
    pixels = await generate(z, labels)
    return Bank(z, labels, pixels, (time.perf_counter() - began) / size)


async def search(
    generate: GenerateFn,
    embed: EmbedFn,
    bank: Bank,
    images: np.ndarray,
    labels: np.ndarray | None,
    budget: Budget,
    manifest: Manifest,
    rng: np.random.Generator,
    deadline: float = math.inf,
    distance: Distance = "pixel",
) -> Projection:
    """The search itself, on any generator: starts from the bank, then ``budget.steps`` steps
    of the evolution strategy (fewer if ``deadline``, a ``time.monotonic()``, comes first)."""
    n, r = len(images), budget.restarts
    targets = await embed(images)
    bank_embeddings, _ = await bank.embedded(distance, embed)
    z0, y, d0 = await asyncio.to_thread(
        _starts, bank_embeddings, bank, targets, labels, r, manifest.num_classes
    )
    es = _Strategy(z0, d0, budget.population, budget.steps, manifest.latent.prior)
    rows_y = None if y is None else np.repeat(y.ravel(), budget.population)
    goal = np.repeat(targets, r, axis=0)  # [N * R, D]: each start's target
    steps = 0
    while steps < budget.steps and time.monotonic() < deadline:
        z = await asyncio.to_thread(es.ask, rng)
        found = await embed(await generate(z, rows_y))
        await asyncio.to_thread(es.tell, z, goal, found)
        steps += 1
    pick = np.arange(n) * r + es.best_d.reshape(n, r).argmin(1)
    z_out = es.best_z[pick]
    y_out = None if y is None else y.ravel()[pick]
    rendered = await generate(z_out, y_out)
    final = _distances(targets, await embed(rendered), 1).ravel()
    return Projection(z_out, y_out, rendered, final.astype(np.float64), steps)


def draw(rng: np.random.Generator, n: int, dim: int, prior: latent.Prior) -> np.ndarray:
    """float32 [n, dim] from the prior (core.latent's distributions, one generator for all)."""
    if prior == "uniform":
        return rng.uniform(-_UNIFORM_BOUND, _UNIFORM_BOUND, (n, dim)).astype(np.float32)
    return rng.standard_normal((n, dim), dtype=np.float32)


def _distances(goal: np.ndarray, found: np.ndarray, population: int) -> np.ndarray:
    """Mean squared difference of each row of ``found`` [S * P, D] to its start's goal [S, D]."""
    diff = found.reshape(len(goal), population, -1) - goal[:, None, :]
    return np.einsum("spd,spd->sp", diff, diff) / diff.shape[-1]


def _starts(
    emb: np.ndarray,
    bank: Bank,
    targets: np.ndarray,
    labels: np.ndarray | None,
    restarts: int,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Each image's starting latents [N * R, dim], labels [N, R] and distances [N * R]: its
    nearest bank entries (for a conditional model whose label is searched, the nearest entry
    of each of the best labels)."""
    d = (targets * targets).sum(1)[:, None] + (emb * emb).sum(1)[None, :] - 2 * targets @ emb.T
    d = np.maximum(d, 0) / emb.shape[1]  # [N, B]
    if bank.labels is not None and labels is not None:
        d = np.where(bank.labels[None, :] == labels[:, None], d, np.inf)
    if bank.labels is None or labels is not None:
        idx = np.argsort(d, axis=1)[:, :restarts]
    else:
        per_label = np.stack(
            [np.where(bank.labels == k, d, np.inf).argmin(1) for k in range(num_classes)], axis=1
        )  # [N, K]: the nearest entry of each label
        best = np.take_along_axis(d, per_label, axis=1).argsort(1)[:, :restarts]
        idx = np.take_along_axis(per_label, best, axis=1)
    y = None if bank.labels is None else bank.labels[idx]
    return bank.z[idx.ravel()], y, np.take_along_axis(d, idx, axis=1).ravel()


class _Strategy:
    """(mu/mu_w, lambda)-ES with an annealed step size, for S searches at once."""

    def __init__(
        self, z0: np.ndarray, d0: np.ndarray, population: int, steps: int, prior: latent.Prior
    ) -> None:
        self.mean = z0.astype(np.float64)
        self.population = population
        self.bound = _UNIFORM_BOUND if prior == "uniform" else None
        self.sigma = SIGMA0
        self.decay = (SIGMA_END / SIGMA0) ** (1 / steps)
        mu = max(1, population // 4)
        w = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
        self.weights = w / w.sum()
        self.best_z = z0.astype(np.float32)
        self.best_d = d0.astype(np.float64)  # the starts' own distances: improve or keep them
        self._eps = np.zeros((len(z0), population, z0.shape[1]))

    def ask(self, rng: np.random.Generator) -> np.ndarray:
        """Candidates float32 [S * P, dim]."""
        s, dim = self.mean.shape
        self._eps = rng.standard_normal((s, self.population, dim))
        z = self.mean[:, None, :] + self.sigma * self._eps
        if self.bound is not None:  # stay in the uniform prior's support
            np.clip(z, -self.bound, self.bound, out=z)
        return z.reshape(s * self.population, dim).astype(np.float32)

    def tell(self, z: np.ndarray, goal: np.ndarray, found: np.ndarray) -> None:
        """The candidates ``ask`` gave, embedded [S * P, D], against each search's goal [S, D]."""
        d = _distances(goal, found, self.population)  # [S, P]
        s, dim = self.mean.shape
        order = np.argsort(d, axis=1)
        top = order[:, 0]
        better = d[np.arange(s), top] < self.best_d
        candidates = z.reshape(s, self.population, dim)
        self.best_z[better] = candidates[better, top[better]]
        self.best_d[better] = d[better, top[better]]
        chosen = np.take_along_axis(self._eps, order[:, : len(self.weights), None], axis=1)
        self.mean += self.sigma * np.einsum("m,smd->sd", self.weights, chosen)
        if self.bound is not None:
            np.clip(self.mean, -self.bound, self.bound, out=self.mean)
        self.sigma *= self.decay
