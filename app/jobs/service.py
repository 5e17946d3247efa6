"""Submitting, cancelling and resuming jobs: validation, the record, the queue, in one blocking
call each.

The API runs these in a worker thread. A training is queued only with a config that validates
against ``training.config`` (the same schema the CLI parses), an export only with a spec that
fits its version (``app.exports.plan``); either within the deployment's limits.

    >>> job = JobService(queue, repo, settings).submit("mnist-cdcgan", "cdcgan", {}, ...)
"""

from __future__ import annotations

import functools
import importlib.util
import math
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from app.exports.manifest import ExportFiles, write_header
from app.exports.plan import ExportSpec, check_for_model, shard_count
from app.jobs.datasets import DatasetStore
from app.jobs.queue import JobQueue
from app.jobs.store import TERMINAL, Job, Progress, Promote
from app.serving.generation import check_truncation
from app.settings import Settings
from core.errors import (
    Conflict,
    InsufficientStorage,
    InvalidInput,
    NotFound,
    NotReady,
    TooManyRequests,
    Unavailable,
)
from core.repository import Repository
from training.config import REMOTE, TrainConfig, load_config, preset_names, preset_path

# What a fine-tune must keep from its base version.
_ARCHITECTURE_KEYS = ("architecture", "conditional", "latent_dim", "prior", "network")


class JobService:
    def __init__(self, queue: JobQueue, repo: Repository, settings: Settings) -> None:
        self.queue = queue
        self.repo = repo
        self.settings = settings
        # `make serve` installs the serving set alone: no torch, so this process cannot train.
        embedded = settings.queue_url is None and settings.embedded_worker
        self.refuses_jobs = embedded and importlib.util.find_spec("torch") is None

    def submit(
        self,
        model: str,
        preset: str,
        overrides: dict[str, Any],
        base_version: int | None,
        dataset: str | None,
        promote: Promote,
        promote_on: Sequence[str],
    ) -> Job:
        """Validate, record and queue a job; 4xx errors name the field at fault."""
        if self.refuses_jobs:
            raise Unavailable(
                "this server runs jobs itself but has no training packages: install them"
                " (make install, or pip install -e '.[train]') or give GAN_QUEUE_URL and run"
                " workers (python -m app.jobs.worker) where they are"
            )
        cfg = self.config(preset, overrides, dataset)
        if base_version is not None:
            self._check_base(model, base_version, cfg)
        return self._queue_new(
            cfg.model_dump_json(),
            model=model,
            preset=preset,
            overrides=overrides,
            base_version=base_version,
            dataset=dataset,
            promote=promote,
            promote_on=list(promote_on),
            progress=Progress(max_steps=cfg.max_steps),
        )

    def submit_export(self, fields: dict[str, Any], version: str | int | None) -> Job:
        """Validate an export against its version (an alias is pinned to its number now),
        the deployment's limits and the free disk, then record and queue it."""
        model = fields["model"]
        try:
            number = self.repo.resolve(model, version)
        except NotFound as e:
            raise InvalidInput(e.detail, field=e.field or "model") from e
        try:
            spec = ExportSpec(**fields, version=number)
        except ValidationError as e:
            err = e.errors()[0]
            raise InvalidInput(err["msg"], field=".".join(map(str, err["loc"])) or None) from e
        manifest = self.repo.manifest(model, number)
        if (why := check_for_model(spec, manifest.num_classes)) is not None:
            raise InvalidInput(why, field="label_mix" if spec.label_mix else "label")
        limit = self.settings.max_export_images
        if spec.n > limit:
            raise InvalidInput(f"n={spec.n} is over the limit of {limit} images", field="n")
        check_truncation(spec.truncation, self.settings.min_truncation)
        # npz: the pixels, a seed and a label; tar: three members of at least 1 KiB each
        # (a 512-byte header, data padded to 512) and a PNG about the pixels' size.
        per_image = math.prod(manifest.image_shape) + (3 * 1024 if spec.format == "tar" else 16)
        needed = spec.n * per_image
        free = shutil.disk_usage(self.settings.data_dir).free
        if needed > free:
            raise InsufficientStorage(
                f"the export needs about {needed / 1e9:.1f} GB; the server has {free / 1e9:.1f} GB"
            )
        progress = Progress(images=0, images_total=spec.n, shards=0, shards_total=shard_count(spec))
        return self._queue_new(
            spec.model_dump_json(),
            functools.partial(write_header, spec=spec, version=manifest),
            kind="export",
            model=model,
            export=spec,
            promote="never",
            progress=progress,
        )

    def _queue_new(
        self, config: str, prepare: Callable[[ExportFiles], None] | None = None, **fields: Any
    ) -> Job:
        """Record a job and queue it; ``prepare`` writes into its folder before it is queued."""
        store = self.queue.store
        queued = len(store.list("queued"))
        if queued >= self.settings.max_queued_jobs:
            raise TooManyRequests(
                f"{queued} jobs are queued already; the limit is {self.settings.max_queued_jobs}"
            )
        job = store.create(config=config, **fields)
        try:
            if prepare is not None:
                prepare(store.folder(job.id).export)
            self.queue.enqueue(job.id)
        except BaseException:  # a 503 (or a full disk) says no job was made: leave no record
            store.discard(job.id)
            raise
        return job

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is asked to stop."""
        return self.queue.store.request_cancel(job_id)

    def delete_export(self, job_id: str) -> None:
        """Remove an ended export: its record, its shards and its manifest."""
        store = self.queue.store
        job = store.get(job_id)
        if job.kind != "export":
            raise NotFound(f"job {job_id} is not an export")
        if job.state not in TERMINAL:
            raise Conflict(f"export {job_id} is {job.state}: cancel it first")
        store.discard(job_id)

    def resume(self, job_id: str) -> Job:
        """Queue a cancelled or failed job again; it goes on from where it stopped."""
        store = self.queue.store
        before = store.get(job_id)
        job = store.request_resume(job_id)
        try:
            self.queue.enqueue(job_id)
        except NotReady:  # left as it was: its owner resumes it again once the queue is back
            kept = ("state", "finished", "error", "cancel_requested", "attempts")
            store.transition(job_id, {"queued"}, **{k: getattr(before, k) for k in kept})
            raise
        return job

    def config(self, preset: str, overrides: dict[str, Any], dataset: str | None) -> TrainConfig:
        """The job's config: the client's overrides name built-in data at most (REMOTE), and an
        uploaded dataset's path is set here, after they are validated."""
        path = None
        if dataset is not None:
            try:
                path = DatasetStore(self.settings.data_dir).path(dataset)
            except NotFound as e:
                raise InvalidInput(e.detail, field="dataset") from e
        try:
            cfg = load_config(preset_path(preset), overrides, context=REMOTE)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InvalidInput(
                f"invalid config: {where}: {err['msg']}", field=f"overrides.{where}"
            ) from e
        except ValueError as e:  # an unknown preset
            raise InvalidInput(str(e), field="preset") from e
        if path is not None:
            cfg = cfg.model_copy(
                update={"dataset": cfg.dataset.model_copy(update={"source": str(path)})}
            )
        if cfg.max_steps > self.settings.max_job_steps:
            raise InvalidInput(
                f"max_steps={cfg.max_steps} is over the limit of {self.settings.max_job_steps}",
                field="overrides.max_steps",
            )
        return cfg

    def _check_base(self, model: str, version: int, cfg: TrainConfig) -> None:
        try:
            base = self.repo.manifest(model, version)
        except NotFound as e:
            raise InvalidInput(e.detail, field="base_version") from e
        base_cfg = base.training.get("config", {})
        new_cfg = cfg.model_dump(mode="json")
        for key in _ARCHITECTURE_KEYS:
            if key in base_cfg and base_cfg[key] != new_cfg[key]:
                raise InvalidInput(
                    f"{key} differs from base version {version} ({base_cfg[key]!r}): "
                    "a fine-tune keeps the architecture",
                    field="base_version",
                )


def presets() -> dict[str, TrainConfig]:
    """The configs a job can start from (training/configs), by name."""
    return {name: load_config(preset_path(name)) for name in preset_names()}


__all__ = ["JobService", "presets"]
