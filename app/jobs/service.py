"""Submitting and cancelling jobs: validation, the record, the queue, in one blocking call each.

The API runs these in a worker thread. A job is queued only with a config that validates
against ``training.config`` (the same schema the CLI parses), within the deployment's limits.

    >>> job = JobService(queue, repo, settings).submit("mnist-cdcgan", "cdcgan", {}, ...)
"""

from __future__ import annotations

import importlib.util
from typing import Any

from pydantic import ValidationError

from app.jobs.datasets import DatasetStore
from app.jobs.queue import JobQueue
from app.jobs.store import Job, Progress, Promote
from app.settings import Settings
from core.errors import InvalidInput, NotFound, NotReady, TooManyRequests, Unavailable
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
        store = self.queue.store
        queued = len(store.list("queued"))
        if queued >= self.settings.max_queued_jobs:
            raise TooManyRequests(
                f"{queued} jobs are queued already; the limit is {self.settings.max_queued_jobs}"
            )
        job = store.create(
            config=cfg.model_dump_json(),
            model=model,
            preset=preset,
            overrides=overrides,
            base_version=base_version,
            dataset=dataset,
            promote=promote,
            progress=Progress(max_steps=cfg.max_steps),
        )
        try:
            self.queue.enqueue(job.id)
        except NotReady:  # the 503 says no job was made: leave no record that would never run
            store.discard(job.id)
            raise
        return job

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is asked to stop."""
        return self.queue.store.request_cancel(job_id)

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
