"""Loaded models: engines and batchers per version, hot-swapped as the repository changes.

The pool keeps one *serving* version per model (the ``production`` alias, else the newest)
plus a few explicitly requested ones. A poller watches the repository; when the serving
version changes it loads and warms the new one first and swaps only then, so requests never
wait on a load and a broken version never replaces a working one. Each poll also checks that
the serving versions' files on disk still match their manifests (``app/serving/artifacts.py``):
a changed or deleted file keeps being served from memory, is reported, and is refused a reload.

    >>> pool = ModelPool(Repository("models"), settings, metrics)
    >>> await pool.start()
    >>> model = await pool.get("mnist-gan", None)
    >>> images = await model.sample([7, 8], labels=None, truncation=None)
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.metrics import Metrics
from app.serving.artifacts import ArtifactCheck, stamp_files
from app.serving.batching import Batcher, RunFn
from app.serving.engine_process import ProcessRuntime
from app.serving.runtime import TENSORS
from app.settings import Settings
from core.errors import ApiError, NotFound, NotReady
from core.repository import DEFAULT_ALIAS, LATEST, Listing, Manifest, Repository

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    manifest: Manifest
    runtime: ProcessRuntime
    generator: Batcher
    discriminator: Batcher | None
    artifacts: ArtifactCheck

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def device(self) -> str:
        return self.runtime.device

    async def sample(
        self, seeds: Sequence[int], labels: np.ndarray | None, truncation: float | None
    ) -> np.ndarray:
        """Pixels uint8 [N, H, W, C] of the images the seeds name (core/latent.py).

        The engine process draws the latents, not the event loop (app/serving/engine_process.py).
        """
        inputs = {"seed": np.asarray(seeds, dtype=np.int64)}
        if truncation is not None:
            inputs["truncation"] = np.full(len(seeds), truncation)
        return await self.generate(inputs, labels)

    async def generate(
        self, inputs: dict[str, np.ndarray], labels: np.ndarray | None
    ) -> np.ndarray:
        """Pixels uint8 [N, H, W, C] for latents: ``{"z": z}``, or seeds as ``sample`` sends them.

        The generator's output is mapped to pixels by the manifest's range.
        """
        if labels is not None:
            inputs = {**inputs, "label": labels}
        return await self.generator.submit(inputs)

    async def tensors(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """The generator's own output, float32 [N, C, H, W] in the output range, for latents
        ``z`` [N, latent_dim]: what the Open Inference Protocol's generator model returns."""
        flag = np.ones(len(z), dtype=np.bool_)
        return await self.generate({"z": z, TENSORS: flag}, labels)

    async def discriminate(self, images: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """Logits [N] for images [N, C, H, W] in the output range."""
        if self.discriminator is None:
            raise NotFound(f"{self.name} v{self.version} has no discriminator")
        inputs = {"image": images} if labels is None else {"image": images, "label": labels}
        return (await self.discriminator.submit(inputs))[:, 0]

    async def close(self) -> None:
        """Finish what is queued, then stop the engines."""
        await self.generator.close()
        if self.discriminator is not None:
            await self.discriminator.close()
        await asyncio.to_thread(self.runtime.close)


@dataclass
class _Entry:
    serving: LoadedModel | None = None
    others: OrderedDict[int, LoadedModel] = field(default_factory=OrderedDict)
    error: str | None = None


class ModelPool:
    def __init__(self, repo: Repository, settings: Settings, metrics: Metrics) -> None:
        self.repo = repo
        self.settings = settings
        self.metrics = metrics
        self._entries: dict[str, _Entry] = {}
        self._listings: dict[str, Listing] = {}
        self._loading: dict[tuple[str, int], asyncio.Task[LoadedModel]] = {}
        self._refresh_lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        if self.settings.registry_poll_seconds > 0:
            self._poller = asyncio.create_task(self._poll(), name="registry-poller")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        for entry in self._entries.values():
            for model in [entry.serving, *entry.others.values()]:
                if model is not None:
                    await model.close()
        self._entries.clear()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_poll_seconds)
            try:
                await self.refresh()
            except Exception:  # the poller must outlive any one bad read of the volume
                log.exception("registry poll failed")

    # --- reading -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._entries)

    def default_name(self) -> str:
        if self.settings.default_model:
            return self.settings.default_model
        if not self._entries:
            raise NotFound("the model repository is empty")
        return self.names()[0]

    def serving(self, name: str) -> LoadedModel | None:
        entry = self._entries.get(name)
        return entry.serving if entry else None

    def serving_versions(self) -> dict[str, int | None]:
        return {n: e.serving.version if e.serving else None for n, e in self._entries.items()}

    def readiness(self) -> dict[str, dict[str, object]]:
        return {
            name: {
                "ready": entry.serving is not None,
                "version": entry.serving.version if entry.serving else None,
                "device": entry.serving.device if entry.serving else None,
                "error": entry.error,
                "integrity": entry.serving.artifacts.error if entry.serving else None,
            }
            for name, entry in sorted(self._entries.items())
        }

    async def get(self, name: str | None, version: str | int | None) -> LoadedModel:
        """The model to serve a request: the serving version unless another is named."""
        name = name or self.default_name()
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(
                f"no model named {name!r}; known: {', '.join(self.names())}", field="model"
            )
        if version is None or version == DEFAULT_ALIAS:
            if entry.serving is None:
                raise NotReady(f"model {name!r} is not loaded: {entry.error or 'loading'}")
            return entry.serving
        number = await self._resolve(name, version)
        if entry.serving is not None and entry.serving.version == number:
            return entry.serving
        if number in entry.others:
            entry.others.move_to_end(number)
            return entry.others[number]
        model = await self._load(name, number)
        entry.others[number] = model
        while len(entry.others) > self.settings.max_loaded_versions:
            _, evicted = entry.others.popitem(last=False)
            await evicted.close()
        return model

    async def _resolve(self, name: str, version: str | int) -> int:
        # From the last poll's snapshot, so pinned-version requests do no disk I/O; a miss
        # (a version published since) is looked up on disk.
        listing = self._listings.get(name)
        if listing is not None:
            try:
                return listing.resolve(version)
            except NotFound:
                pass
        return await asyncio.to_thread(self.repo.resolve, name, version)

    # --- loading -------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Bring the serving versions in line with the repository."""
        async with self._refresh_lock:
            self._listings = await asyncio.to_thread(self.repo.listings)
            names = await asyncio.to_thread(self.repo.models)
            for gone in set(self._entries) - set(names):
                await self._drop(gone)
            for name in names:
                entry = self._entries.setdefault(name, _Entry())
                try:
                    listing = self._listings.get(name)
                    if listing is None:  # left out of the snapshot: read again for the reason
                        listing = await asyncio.to_thread(self.repo.listing, name)
                    target = listing.resolve(None)
                except ApiError as e:
                    entry.error = e.detail
                    continue
                if entry.serving is not None and entry.serving.version == target:
                    continue
                try:
                    model = entry.others.pop(target, None) or await self._load(name, target)
                except ApiError as e:
                    if entry.error != e.detail:  # log a broken version once, not every poll
                        log.error("refusing %s v%s: %s", name, target, e.detail)
                        self.metrics.load_failures.labels(name).inc()
                    entry.error = e.detail
                    continue
                old, entry.serving, entry.error = entry.serving, model, None
                self.metrics.loaded_version.labels(name).set(model.version)
                self.metrics.artifacts_ok.labels(name, str(model.version)).set(1)
                if old is not None:
                    self.metrics.reloads.labels(name).inc()
                    self.metrics.artifacts_ok.remove(name, str(old.version))
                    log.info("%s: now serving v%d (was v%d)", name, model.version, old.version)
                    await old.close()  # drains requests already queued on it
                else:
                    log.info("%s: serving v%d on %s", name, model.version, model.device)
            await self._check_artifacts()

    async def _check_artifacts(self) -> None:
        """Report serving versions whose files on disk changed since they were verified.

        The loaded copy keeps serving (it was verified, and requests cannot tell); what is on
        disk would be refused by any new load, here or in another replica, so it is an alarm.
        """
        for name, entry in list(self._entries.items()):
            model = entry.serving
            if model is None:
                continue
            before = model.artifacts.error
            error = await asyncio.to_thread(model.artifacts.run)
            self.metrics.artifacts_ok.labels(name, str(model.version)).set(error is None)
            if error is not None and error != before:
                log.error("%s v%d: %s", name, model.version, error)
            elif error is None and before is not None:
                log.info("%s v%d: files on disk match the manifest again", name, model.version)

    async def _drop(self, name: str) -> None:
        entry = self._entries.pop(name)
        if entry.serving is not None:
            self.metrics.artifacts_ok.remove(name, str(entry.serving.version))
        for model in [entry.serving, *entry.others.values()]:
            if model is not None:
                await model.close()

    async def _load(self, name: str, version: int) -> LoadedModel:
        key = (name, version)
        task = self._loading.get(key)
        if task is None:  # concurrent requests for one version share one load
            task = asyncio.create_task(self._load_now(name, version))
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load_now(self, name: str, version: int) -> LoadedModel:
        manifest, runtime, artifacts = await asyncio.to_thread(self._load_runtime, name, version)
        s = self.settings

        def batcher(run: RunFn, role: str) -> Batcher:
            histogram = self.metrics.batch_size.labels(name, role)
            b = Batcher(
                run,
                max_batch=s.max_batch,
                max_delay_ms=s.max_delay_ms,
                max_queue=s.queue_size,
                enabled=s.batching,
                timeout_s=s.request_timeout_s,
                name=f"{name}-v{version}-{role}",
                on_batch=histogram.observe,
            )
            self.metrics.queue_depth.labels(name, role).set_function(lambda: b.queue_depth)
            return b

        model = LoadedModel(
            manifest,
            runtime,
            batcher(runtime.generate, "generator"),
            batcher(runtime.discriminate, "discriminator") if runtime.has_discriminator else None,
            artifacts,
        )
        await model.generator.start()
        if model.discriminator is not None:
            await model.discriminator.start()
        return model

    def _load_runtime(
        self, name: str, version: int
    ) -> tuple[Manifest, ProcessRuntime, ArtifactCheck]:
        folder = self.repo.version_dir(name, version)
        stamps = stamp_files(folder)  # before hashing: a write after this shows at the next check
        manifest = self.repo.verify(name, version)
        restarts = self.metrics.engine_restarts.labels(name)
        runtime = ProcessRuntime(folder, manifest, self.settings, on_restart=restarts.inc)
        return manifest, runtime, ArtifactCheck(folder, dict(manifest.artifacts), stamps)


__all__ = ["LATEST", "LoadedModel", "ModelPool"]
