"""POST /v1/discriminate: D's verdict on uploaded images (multipart, base64 JSON or npy)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from app.api.deps import LanesDep, MetricsDep, PoolDep, SettingsDep
from app.api.responses import model_headers
from app.api.schemas import ERRORS, DiscriminateJson, DiscriminateResponse, ImagesJson, Score
from app.lanes import Lanes
from app.serving import generation
from app.serving.pool import LoadedModel, ModelPool
from app.settings import Settings
from core import decoding
from core.errors import BadRequest, InvalidInput, LimitExceeded, UnsupportedMediaType

router = APIRouter(tags=["discriminate"], responses=ERRORS)

REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "labels": {"type": "string", "description": "comma-separated, one per image"},
                    "resize": {"type": "boolean"},
                    "model": {"type": "string"},
                    "version": {"type": "string"},
                },
                "required": ["images"],
            }
        },
        "application/json": {"schema": DiscriminateJson.model_json_schema()},
        "application/x-npy": {
            "schema": {"type": "string", "format": "binary"},
            "description": "uint8 [N, H, W, C]; model, version and labels as query parameters",
        },
    },
}


@router.post("/v1/discriminate", openapi_extra={"requestBody": REQUEST_BODY})
async def discriminate(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    lanes: LanesDep,
    response: Response,
    model: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
    labels: Annotated[str | None, Query(description="npy: comma-separated labels")] = None,
    resize: Annotated[bool, Query()] = False,
) -> DiscriminateResponse:
    """Probability real and logit per image, from the model's discriminator.

    For a conditional model the score is how real D finds an image given its label, not a
    check of the label: D never saw real images with wrong labels, and scores them no lower.
    One label applies to every image, or give one per image.
    """
    query = {"model": model, "version": version, "labels": labels, "resize": str(resize)}
    upload = await read_images(request, pool, settings, lanes, DiscriminateJson, query)
    body = upload.body
    if body is not None:
        labels = None if body.labels is None else ",".join(map(str, _listed(body.labels)))
    else:
        labels = upload.fields.get("labels")
    loaded, images = upload.model, upload.images
    logits = await generation.discriminate(loaded, images, _labels(labels))
    response.headers.update(model_headers(loaded))
    metrics.images_scored.labels(loaded.name, str(loaded.version)).inc(len(images))
    return DiscriminateResponse(
        model=loaded.name,
        version=loaded.version,
        results=[Score(probability_real=_sigmoid(x), logit=float(x)) for x in logits.tolist()],
    )


Body = TypeVar("Body", bound=ImagesJson)


@dataclass(frozen=True)
class Upload(Generic[Body]):
    """Images as the image endpoints take them, decoded to the model's shape, and the fields
    sent beside them: the JSON body, or (multipart, npy) the form's text over the query's."""

    model: LoadedModel
    images: np.ndarray  # uint8 [N, H, W, C]
    body: Body | None  # application/json
    fields: dict[str, str]  # multipart and npy


async def read_images(
    request: Request,
    pool: ModelPool,
    settings: Settings,
    lanes: Lanes,
    json_type: type[Body],
    query: dict[str, str | None],
) -> Upload[Body]:
    """Multipart, base64 JSON or npy images for the model (and version) the request names,
    within the upload, image, pixel and count limits; /v1/discriminate and /v1/project."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limits = decoding.DecodeLimits(
        settings.max_image_bytes, settings.max_pixels, settings.max_image_side
    )
    fields = {k: v for k, v in query.items() if v is not None}
    body = None
    if ctype == "multipart/form-data":
        form = await _form(request, settings)
        try:
            fields |= {k: v for k, v in form.multi_items() if isinstance(v, str) and v}
            files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
            if not files:
                raise InvalidInput("attach one or more files in the 'images' field", field="images")
            blobs = [await f.read() for f in files]
        finally:
            await form.close()
        loaded = await pool.get(fields.get("model"), fields.get("version"))
        resize = _flag(fields.get("resize"), False)
        images = await _decode_all(lanes, loaded, blobs, limits, resize, base64=False)
    elif ctype == "application/json":
        body = _json_body(await request.body(), json_type)
        loaded = await pool.get(body.model, body.version)
        _count(len(body.images), settings)
        images = await _decode_all(lanes, loaded, body.images, limits, body.resize, base64=True)
    elif ctype in ("application/x-npy", "application/octet-stream"):
        loaded = await pool.get(fields.get("model"), fields.get("version"))
        raw = decoding.decode_npy(await request.body(), settings.max_upload_bytes)
        images = generation.check_image_shape(loaded.manifest, raw)
        _count(len(images), settings)
    else:
        raise UnsupportedMediaType(
            f"content type {ctype or '(none)'!r}: send multipart/form-data, application/json "
            "or application/x-npy"
        )
    return Upload(loaded, images, body, fields)


async def _form(request: Request, settings: Settings) -> FormData:
    try:
        return await request.form(
            max_files=settings.max_files,
            max_fields=16,
            max_part_size=settings.max_image_bytes,
        )
    except (MultiPartException, HTTPException) as e:  # Starlette reraises the first as a 400
        if isinstance(e, HTTPException) and e.status_code != 400:
            raise  # the body-size limit's 413, raised while the form streams in
        message = e.message if isinstance(e, MultiPartException) else str(e.detail)
        # "Too many files/fields" and "Part exceeded maximum size" are our limits, not malformed.
        if message.startswith(("Too many", "Part exceeded")):
            raise LimitExceeded(f"multipart body over a limit: {message}") from e
        raise BadRequest(f"malformed multipart body: {message}") from e


def _json_body(raw: bytes, json_type: type[Body]) -> Body:
    try:
        return json_type.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidInput(f"{where or 'body'}: {first['msg']}", field=where) from e


def _count(n: int, settings: Settings) -> None:
    if n > settings.max_files:
        raise LimitExceeded(f"{n} images is over the limit of {settings.max_files}", field="images")


async def _decode_all(
    lanes: Lanes,
    model: LoadedModel,
    blobs: list[bytes] | list[str],
    limits: decoding.DecodeLimits,
    resize: bool,
    *,
    base64: bool,
) -> np.ndarray:
    c, h, w = model.manifest.image_shape
    decode = decoding.decode_base64_image if base64 else decoding.decode_image

    def run() -> np.ndarray:
        out = []
        for i, blob in enumerate(blobs):
            try:
                out.append(decode(blob, limits=limits, channels=c, size=(h, w), resize=resize))  # type: ignore[arg-type]
            except BadRequest as e:
                e.detail = f"image {i}: {e.detail}"
                raise
        return np.stack(out)

    return await lanes.uploads.run(run)


def _labels(text: str | None) -> list[int] | None:
    if text is None or text == "":
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError as e:
        raise InvalidInput("labels must be comma-separated integers", field="labels") from e


def _listed(labels: int | list[int]) -> list[int]:
    return [labels] if isinstance(labels, int) else labels


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"resize must be true or false, got {value!r}", field="resize")


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
