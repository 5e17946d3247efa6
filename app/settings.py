"""The service's one settings object (environment prefix ``GAN_``).

Built once, in ``create_app``; nothing reads the environment at import time. Tests build
``Settings(models_dir=tmp_path, ...)`` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.repository import Repository

# The project's classifier, shipped as package data beside this package in a checkout and in an
# installed wheel alike (pyproject.toml); read as a file, so the server never imports training.
CLASSIFIER = (
    Path(__file__).resolve().parents[1] / "training" / "classifier" / "mnist_classifier.onnx"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GAN_", extra="ignore", frozen=True)

    # Where things live.
    models_dir: Path = Field(
        Path("models"), description="the starting model repository, read only (the committed one)"
    )
    data_dir: Path = Field(Path("data"), description="jobs, datasets and the embedded queue")
    publish_dir: Path | None = Field(
        None,
        description="where jobs publish versions and aliases are set, read over models_dir;"
        " default: <data_dir>/models",
    )

    # Runtime.
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when the runtime has it, else the CPU"
    )
    backend: Literal["auto", "onnx", "torchscript"] = Field(
        "auto", description="auto: ONNX Runtime when the version has ONNX files"
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        description="ONNX Runtime threads for small batches; 0: one per CPU but one, which the"
        " event loop keeps (at least 1)",
    )
    big_batch_threads: int = Field(
        0, ge=0, description="ONNX Runtime threads for big batches; 0: one per CPU"
    )
    big_batch_rows: int = Field(
        256, ge=1, description="rows from which a batch runs on big_batch_threads"
    )
    upload_threads: int = Field(
        0, ge=0, description="threads decoding uploads (a lane of their own); 0: one per CPU"
    )
    encode_threads: int = Field(
        0, ge=0, description="threads encoding responses (a lane of their own); 0: one per CPU"
    )
    ort_spinning: bool = Field(
        True, description="ONNX Runtime threads spin between runs: faster, but burn CPU"
    )
    gil_switch_interval_us: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="longest a busy thread keeps the GIL from a waiting one (Python: 5000)",
    )
    default_model: str | None = Field(None, description="default: the first model by name")
    registry_poll_seconds: float = Field(2.0, ge=0, description="0 disables hot reload")
    max_loaded_versions: int = Field(4, ge=1, description="per model, besides the default")

    # Dynamic batching.
    batching: bool = Field(True, description="coalesce concurrent requests into one engine call")
    max_batch: int = Field(256, ge=1, le=65536, description="rows per coalesced engine call")
    max_delay_ms: float = Field(
        0.0, ge=0, le=1000, description="longest wait for more requests to join a batch"
    )
    queue_size: int = Field(4096, ge=1, description="rows waiting per model before 503")

    # Request limits.
    max_n: int = Field(1024, ge=1, le=16384, description="images per /v1/sample request")
    max_steps: int = Field(256, ge=2, le=4096, description="frames per /v1/interpolate")
    max_upload_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="request body, refused before parsing"
    )
    max_image_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="one uploaded image")
    max_pixels: int = Field(
        4096 * 4096, ge=1, description="one uploaded image, checked before decoding"
    )
    max_image_side: int = Field(
        8192, ge=1, description="either side of an uploaded image, checked before decoding"
    )
    max_files: int = Field(256, ge=1, description="images per /v1/discriminate request")
    min_truncation: float = Field(0.05, gt=0, description="lower bound on truncation thresholds")
    request_timeout_s: float = Field(
        60.0, gt=0, description="longest wait for an engine call before 503"
    )
    response_cache_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="samples of explicit seeds kept in memory; 0: none"
    )
    alias_max_age_s: int = Field(
        10, ge=0, description="Cache-Control max-age of samples from an alias, not a version"
    )
    max_json_values: int = Field(
        262_144,
        ge=16,
        description="values in a JSON body, counted before parsing (parsing holds every request)",
    )

    # Slow clients (python -m app applies the first three; the middleware the body's).
    header_timeout_s: float = Field(10.0, gt=0, description="to send a request's headers")
    body_timeout_s: float = Field(60.0, gt=0, description="to send a request's body, whole")
    keep_alive_s: float = Field(5.0, gt=0, description="idle time between requests on a connection")
    max_connections: int = Field(
        1024, ge=1, description="open connections (and requests) before new requests get 503"
    )

    # Projection (/v1/project).
    max_project_images: int = Field(64, ge=1, description="images per /v1/project request")
    max_project_steps: int = Field(500, ge=1, description="search steps per /v1/project")
    max_project_restarts: int = Field(10, ge=1, description="starts per image in /v1/project")
    project_bank_size: int = Field(
        4096, ge=16, le=65536, description="latents generated once per version for the starts"
    )
    project_banks: int = Field(8, ge=1, description="versions whose bank stays cached")
    features_classifier: Path | None = Field(
        CLASSIFIER,
        description="the ONNX classifier behind distance=features; unset: pixel distance only",
    )

    # Security and operations.
    api_key: SecretStr | None = Field(None, description="admin key; unset: admin routes open")
    cors_origins: list[str] = Field(
        default_factory=list, description="JSON list of allowed origins; empty: CORS off"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="access logs are JSON lines at info"
    )

    # Retraining jobs.
    queue_url: str | None = Field(
        None,
        description="redis://... : workers consume, and job records live there too; unset:"
        " SQLite queue and record files in data_dir",
    )
    embedded_worker: bool = Field(
        True, description="run a job consumer inside the service (ignored with queue_url)"
    )
    job_workers: int = Field(1, ge=1, le=64, description="jobs run at once per worker process")
    max_queued_jobs: int = Field(16, ge=1, description="queued jobs before a new job is 429")
    max_job_steps: int = Field(200_000, ge=1, description="max_steps allowed in a job")
    job_stale_s: float = Field(30.0, gt=0, description="heartbeat age at which a job is reaped")
    job_max_attempts: int = Field(3, ge=1, description="runs before a dying job is failed")
    max_export_images: int = Field(
        100_000_000, ge=1, description="images in one export job (POST /v1/exports)"
    )
    max_dataset_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="a dataset upload (unpacked: 4x)"
    )
    max_dataset_files: int = Field(100_000, ge=1, description="images in a dataset upload")
    max_dataset_pixels: int = Field(
        2**26,
        ge=1,
        description="decoded pixel values in a dataset upload (height x width x channels,"
        " summed: its bytes in memory)",
    )

    @property
    def published_models(self) -> Path:
        return self.publish_dir or self.data_dir / "models"

    def repository(self) -> Repository:
        """The served repository: published versions over the read-only starting one."""
        return Repository(self.published_models, base=self.models_dir)
