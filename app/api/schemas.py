"""Request and response bodies. Field constraints here are the API's first line of validation;
limits that come from settings are checked in the handlers (they vary per deployment)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.exports.plan import ExportSpec
from app.jobs.store import Job, Promote
from core import identifiers
from core.scores import DEFAULT_PROMOTE_ON, SCORES, ScoreName

Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
ModelName = Annotated[str, Field(min_length=1, max_length=64, pattern=identifiers.NAME_PATTERN)]
DatasetId = Annotated[
    str, Field(max_length=32, pattern=identifiers.ID_PATTERN, description="from POST /v1/datasets")
]
VersionRef = Annotated[
    str | int | None,
    Field(description="a version number, an alias (production, latest, ...); default production"),
]


class Problem(BaseModel):
    """Every error the API answers, as ``application/problem+json`` (RFC 9457).

    >>> Problem(type="urn:gan-serve:problem:not-found", title="not found", status=404,
    ...         detail="no model named 'x'", field="model").field
    'model'
    """

    type: str = Field(description="urn:gan-serve:problem:<title>")
    title: str
    status: int
    detail: str = Field(description="what went wrong, for a person")
    field: str | None = Field(None, description="the request field at fault, when one is")
    errors: list[dict[str, str | None]] | None = Field(
        None, description="validation errors: every field at fault, with its message"
    )


PROBLEM = "application/problem+json"
# Any route can answer these. Every router declares them, so that the OpenAPI document is true
# to what is sent (they replace FastAPI's default 422 body, which this app never sends).
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"description": text, "content": {PROBLEM: {"schema": Problem.model_json_schema()}}}
    for code, text in (
        ("4XX", "the request was refused: see detail and field"),
        ("5XX", "overloaded or not ready (with Retry-After), or failed"),
    )
}


class _Body(BaseModel):
    # Strict: a body holds what the schema says (no "5" for 5, no true for 1.0), so what the
    # OpenAPI document promises is what is accepted.
    model_config = ConfigDict(extra="forbid", strict=True)


class SampleRequest(_Body):
    model: ModelName | None = Field(None, description="default: GAN_DEFAULT_MODEL or the first")
    version: VersionRef = None
    n: int = Field(1, ge=1, description="number of images (at most GAN_MAX_N)")
    seed: Seed | None = Field(None, description="image i uses seed + i")
    seeds: list[Seed] | None = Field(None, description="one seed per image (overrides n)")
    latents: list[list[float]] | None = Field(
        None,
        description="one latent vector per image, of the model's latent dim, instead of seeds "
        "(overrides n; conditional models need labels)",
    )
    labels: int | list[int] | None = Field(
        None,
        description="conditional models: one label for all, or one per image; "
        "default: label = seed mod num_classes",
    )
    truncation: float | None = Field(None, gt=0, description="resample |z| components above it")
    format: Literal["png", "json", "npy", "zip"] = "png"
    cols: int | None = Field(None, ge=1, le=1024, description="png grid columns")
    return_latents: bool = Field(False, description="json: include each image's z")

    @model_validator(mode="after")
    def _seeds(self) -> SampleRequest:
        if self.latents is not None:
            if self.seed is not None or self.seeds is not None:
                raise ValueError("give latents, or seed or seeds, not both")
            if not self.latents:
                raise ValueError("latents must not be empty")
            if self.truncation is not None:
                raise ValueError("truncation resamples seeds' latents: omit it with latents")
            if "n" in self.model_fields_set and self.n != len(self.latents):
                raise ValueError(f"n={self.n} but {len(self.latents)} latents were given")
            self.n = len(self.latents)
        if self.seeds is not None:
            if self.seed is not None:
                raise ValueError("give seed or seeds, not both")
            if not self.seeds:
                raise ValueError("seeds must not be empty")
            if "n" in self.model_fields_set and self.n != len(self.seeds):
                raise ValueError(f"n={self.n} but {len(self.seeds)} seeds were given")
            self.n = len(self.seeds)
        return self


class SampleItem(BaseModel):
    seed: int | None = Field(description="null for an image drawn from a given latent")
    label: int | None
    png: str = Field(description="base64 PNG")
    latent: list[float] | None = None


class SampleResponse(BaseModel):
    model: str
    version: int
    images: list[SampleItem]


class Endpoint(_Body):
    seed: Seed | None = None
    latent: list[float] | None = None

    @model_validator(mode="after")
    def _one(self) -> Endpoint:
        if (self.seed is None) == (self.latent is None):
            raise ValueError("give exactly one of seed or latent")
        return self


class InterpolateRequest(_Body):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    model: ModelName | None = None
    version: VersionRef = None
    start: Endpoint = Field(alias="from")
    end: Endpoint = Field(alias="to")
    steps: int = Field(8, ge=2, description="frames, both ends included (at most GAN_MAX_STEPS)")
    method: Literal["lerp", "slerp"] = "slerp"
    label: int | None = Field(None, ge=0)
    truncation: float | None = Field(None, gt=0)
    format: Literal["png", "gif", "webp", "json", "npy"] = "png"
    duration_ms: int = Field(100, ge=10, le=10_000, description="gif/webp frame time")


class Frame(BaseModel):
    t: float
    png: str


class InterpolateResponse(BaseModel):
    model: str
    version: int
    method: str
    frames: list[Frame]


class ImagesJson(_Body):
    """What every endpoint that takes images reads from a JSON body (app/api/discriminate.py)."""

    model: ModelName | None = None
    version: VersionRef = None
    images: list[str] = Field(min_length=1, description="base64 PNG/JPEG/WebP or data: URLs")
    resize: bool = False


class DiscriminateJson(ImagesJson):
    labels: int | list[int] | None = Field(
        None, description="conditional models: one label for all images, or one per image"
    )


class Score(BaseModel):
    probability_real: float
    logit: float


class DiscriminateResponse(BaseModel):
    model: str
    version: int
    results: list[Score]


class AliasUpdate(_Body):
    version: int = Field(ge=1)


class ModelSummary(BaseModel):
    name: str
    versions: list[int]
    aliases: dict[str, int]
    serving_version: int | None
    architecture: str | None
    conditional: bool | None
    scores: dict[ScoreName, float] = Field(
        description="the production version's scores (else the latest's): fid, cas, precision, "
        "...; every figure and its protocol are in GET /v1/models/{name}"
    )


class ModelDetail(BaseModel):
    name: str
    aliases: dict[str, int]
    serving_version: int | None
    versions: list[dict[str, object]]


class JobRequest(_Body):
    model: ModelName
    preset: str = Field(
        "cdcgan", max_length=64, description="a config in training/configs, e.g. paper, cdcgan"
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="config fields, dotted for nested: optimizer.lr_g"
    )
    base_version: int | None = Field(None, ge=1, description="fine-tune from this version")
    dataset: DatasetId | None = Field(None, description="an uploaded dataset; default the digits")
    promote: Promote = "if_better"
    promote_on: list[ScoreName] = Field(
        default_factory=lambda: list(DEFAULT_PROMOTE_ON),
        min_length=1,
        max_length=len(SCORES),
        description="if_better: the scores the new version must be no worse on than production "
        "(fid lower is better, the others higher); one either version lacks is skipped",
    )


class ExportRequest(ExportSpec):
    """An export as asked for: the version may be an alias, pinned to its number on submission."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: ModelName
    version: VersionRef = None  # type: ignore[assignment]


class Preset(BaseModel):
    name: str
    architecture: str
    conditional: bool
    max_steps: int
    config: dict[str, Any] = Field(description="the full config a job starts from")


class JobList(BaseModel):
    jobs: list[Job]
    total: int


class ProjectOptions(_Body):
    """The search /v1/project runs: JSON fields, or multipart form fields and npy query
    parameters (labels comma-separated there)."""

    labels: int | list[int] | None = Field(
        None,
        description="conditional models: each image's label (one for all, or one per image); "
        "default: searched, over the best `restarts` labels",
    )
    steps: int = Field(80, ge=1, description="search steps (at most GAN_MAX_PROJECT_STEPS)")
    restarts: int = Field(
        1, ge=1, description="starts refined per image (at most GAN_MAX_PROJECT_RESTARTS)"
    )
    distance: Literal["pixel", "features"] = Field(
        "pixel",
        description="pixel: mean squared difference of pixels in [0, 1]; features: of the "
        "project's classifier's features (models of 28x28 digits evaluated under it)",
    )
    seed: Seed = Field(
        0, description="the search's random draws: the same request, the same answer"
    )


class ProjectJson(ImagesJson, ProjectOptions):
    pass


class Projected(BaseModel):
    latent: list[float] = Field(description="float32 z: /v1/sample latents, /v1/interpolate")
    label: int | None
    png: str = Field(description="base64 PNG of the reconstruction, G(latent[, label])")
    distance: float = Field(description="between the image and its reconstruction")
    steps: int = Field(description="search steps taken (fewer than asked near the timeout)")


class ProjectResponse(BaseModel):
    model: str
    version: int
    distance: str
    results: list[Projected]
