"""The model repository over HTTP: list, inspect, promote and roll back."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import FileResponse

from app.api.deps import PoolDep, RepoDep, require_admin, require_json
from app.api.schemas import ERRORS, AliasUpdate, ModelDetail, ModelName, ModelSummary
from core.errors import NotFound
from core.repository import SAMPLES, Repository, check_name
from core.scores import scores

router = APIRouter(tags=["models"], responses=ERRORS)


@router.get("/v1/models")
async def list_models(repo: RepoDep, pool: PoolDep) -> list[ModelSummary]:
    """Every model, its versions and aliases, and its production version's scores."""
    return await asyncio.to_thread(_summaries, repo, pool.serving_versions())


@router.get("/v1/models/{name}")
async def get_model(name: str, repo: RepoDep, pool: PoolDep) -> ModelDetail:
    """Every version's manifest (metrics, training config, sha256s), and the aliases."""
    return await asyncio.to_thread(_detail, repo, check_name(name), pool.serving_versions())


@router.get(
    "/v1/models/{name}/versions/{version}/samples.png",
    response_class=FileResponse,
    responses={200: {"description": "the grid made at export", "content": {"image/png": {}}}},
)
async def version_samples(
    name: str, version: Annotated[int, Path(ge=1)], repo: RepoDep
) -> FileResponse:
    """The samples grid a version was published with, checked against its manifest's sha256."""
    path = await asyncio.to_thread(repo.artifact, check_name(name), version, SAMPLES)
    return FileResponse(path, media_type="image/png")


@router.put(
    "/v1/models/{name}/aliases/{alias}",
    dependencies=[Depends(require_admin), Depends(require_json)],
)
async def set_alias(
    name: ModelName, alias: ModelName, body: AliasUpdate, repo: RepoDep, pool: PoolDep
) -> dict[str, object]:
    """Point an alias at a version: ``production`` promotes or rolls back what is served."""
    await asyncio.to_thread(repo.set_alias, name, alias, body.version)
    await pool.refresh()  # this replica now; the others on their next poll
    return {"name": name, "alias": alias, "version": body.version}


def _summaries(repo: Repository, serving: dict[str, int | None]) -> list[ModelSummary]:
    out = []
    for name in repo.models():
        listing = repo.listing(name)
        manifest = repo.manifest(name, listing.versions[-1]) if listing.versions else None
        production = repo.manifest(name, listing.resolve()) if listing.versions else None
        out.append(
            ModelSummary(
                name=name,
                versions=list(listing.versions),
                aliases=listing.aliases,
                serving_version=serving.get(name),
                architecture=manifest.architecture if manifest else None,
                conditional=manifest.conditional if manifest else None,
                scores=scores(production.metrics) if production else {},
            )
        )
    return out


def _detail(repo: Repository, name: str, serving: dict[str, int | None]) -> ModelDetail:
    if name not in repo.models():
        raise NotFound(f"no model named {name!r}", field="name")
    return ModelDetail(
        name=name,
        aliases=repo.aliases(name),
        serving_version=serving.get(name),
        versions=[repo.manifest(name, v).to_dict() for v in repo.versions(name)],
    )
