"""app.jobs.promotion: never, always and if_better, on a real repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.jobs.promotion import is_better, promote
from app.jobs.store import Job, Promote
from app.settings import Settings
from core.repository import Repository
from tests.app.helpers import submit, wait_state
from tests.conftest import ROOT


@pytest.fixture
def committed_models(models_dir: Path) -> Path:
    """The tiny models plus the committed mnist-cdcgan, whose manifest has real metrics."""
    shutil.copytree(ROOT / "models" / "mnist-cdcgan", models_dir / "mnist-cdcgan")
    return models_dir


def test_if_better_keeps_a_worse_model_out_of_production(
    committed_models: Path,
    tmp_path: Path,
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    # What the server serves: its published versions (under its data dir) over the models.
    repo = Repository(tmp_path / "data" / "models", base=committed_models)
    production, versions = repo.aliases("mnist-cdcgan")["production"], repo.versions("mnist-cdcgan")
    server = start_server(GAN_MODELS_DIR=str(committed_models))
    promote_on = ["fid", "cas", "precision"]
    job = submit(server.url, model="mnist-cdcgan", promote="if_better", promote_on=promote_on)
    assert job["promote_on"] == promote_on
    done = wait_state(server.url, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["promoted"] is False, done
    # Every score named was measured on both: the job's version at export, production's by
    # `python -m training score`.
    reason = done["promotion_reason"]
    assert reason.startswith("FID ") and ", CAS " in reason and ", precision " in reason, reason
    assert f"in production (v{production}): worse on" in reason and "skipped" not in reason
    assert repo.aliases("mnist-cdcgan")["production"] == production
    assert repo.versions("mnist-cdcgan") == [*versions, done["published_version"]]  # not promoted


# --- is_better and promote on a repository built here ------------------------------------------


def _manifest(fid: float, covered: int, **usefulness: float) -> dict:
    """A manifest with these figures; ``usefulness`` as ``cas=0.9``, ``precision=0.8``."""
    prdc = {k: v for k, v in usefulness.items() if k != "cas"}
    block = {**({"cas": usefulness["cas"]} if "cas" in usefulness else {}), "prdc": prdc}
    return {
        "name": "m",
        "architecture": "dcgan",
        "latent": {"dim": 8, "prior": "normal"},
        "num_classes": 0,
        "class_names": [],
        "image_shape": [1, 28, 28],
        "output_range": [0.0, 1.0],
        "tensors": {"generator": {"inputs": ["z"], "outputs": ["image"]}},
        "opset": 17,
        "metrics": {
            "generated": {"fid": fid, "mode_coverage": {"classes_covered": covered}},
            **({"usefulness": block} if usefulness else {}),
        },
    }


def _publish(
    repo: Repository, fid: float, covered: int, aliases: tuple[str, ...] = (), **usefulness: float
) -> int:
    with repo.staging("m") as staged:
        (staged / "generator.onnx").write_bytes(f"{fid} {covered} {usefulness}".encode())
        return repo.publish(staged, _manifest(fid, covered, **usefulness), aliases).version


def _job(version: int, policy: Promote, promote_on: list[str] | None = None) -> Job:
    return Job(id="0123456789abcdef", model="m", preset="dcgan", promote=policy,
               promote_on=promote_on, published_version=version)  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(tmp_path / "models")


@pytest.fixture
def settings(repo: Repository) -> Settings:
    return Settings(models_dir=repo.root, data_dir=repo.root.parent / "data", publish_dir=repo.root)


def test_never_leaves_production_where_it_is(repo: Repository, settings: Settings) -> None:
    _publish(repo, 10.0, 5, ("production",))
    new = _publish(repo, 1.0, 10)  # better on both counts, but the policy says never
    assert promote(settings, _job(new, "never")) == (False, "policy is never")
    assert repo.aliases("m")["production"] == 1


def test_always_moves_production_even_to_a_worse_version(
    repo: Repository, settings: Settings
) -> None:
    _publish(repo, 1.0, 10, ("production",))
    new = _publish(repo, 50.0, 2)
    assert promote(settings, _job(new, "always")) == (True, "policy is always")
    assert repo.aliases("m")["production"] == new == 2


def test_if_better_promotes_a_better_version(repo: Repository, settings: Settings) -> None:
    _publish(repo, 10.0, 5, ("production",), cas=0.90)
    new = _publish(repo, 9.5, 5, cas=0.92)  # lower FID, higher CAS: the default scores
    promoted, reason = promote(settings, _job(new, "if_better"))
    assert (promoted, reason) == (True, "FID 9.50 vs 10.00, CAS 0.920 vs 0.900 in production (v1)")
    assert repo.aliases("m")["production"] == 2


@pytest.mark.parametrize(
    ("fid", "covered"),
    [(10.5, 5), (9.0, 4)],  # worse FID; better FID but a class lost
)
def test_if_better_keeps_a_worse_version_out(
    repo: Repository, settings: Settings, fid: float, covered: int
) -> None:
    _publish(repo, 10.0, 5, ("production",))
    new = _publish(repo, fid, covered)
    better, reason = is_better(repo, "m", new, ["fid", "classes_covered"])
    assert better is False and f"classes covered {covered} vs 5" in reason
    assert reason.endswith(f"worse on {'FID' if fid > 10 else 'classes covered'}")
    job = _job(new, "if_better", ["fid", "classes_covered"])
    assert promote(settings, job) == (False, reason)
    assert repo.aliases("m")["production"] == 1


def test_if_better_weighs_the_scores_the_job_names(repo: Repository, settings: Settings) -> None:
    _publish(repo, 10.0, 5, ("production",), cas=0.95, precision=0.8, density=1.0)
    new = _publish(repo, 9.0, 5, cas=0.90, precision=0.9, density=1.0)  # CAS worse
    assert promote(settings, _job(new, "if_better")) == (
        False,
        "FID 9.00 vs 10.00, CAS 0.900 vs 0.950 in production (v1): worse on CAS",
    )
    better, reason = is_better(repo, "m", new, ["precision", "density", "fid", "precision"])
    assert (better, reason) == (
        True,
        "precision 0.900 vs 0.800, density 1.000 vs 1.000, FID 9.00 vs 10.00 in production (v1)",
    )
    assert promote(settings, _job(new, "if_better", ["precision", "fid"]))[0] is True
    assert repo.aliases("m")["production"] == new


def test_a_score_either_version_lacks_is_skipped_and_named(repo: Repository) -> None:
    _publish(repo, 10.0, 5, ("production",))  # published before CAS was measured
    new = _publish(repo, 9.0, 5, cas=0.5, recall=0.7)
    assert is_better(repo, "m", new, ["fid", "cas", "coverage"]) == (
        True,
        "FID 9.00 vs 10.00 in production (v1); skipped: CAS (not in production), "
        "coverage (not in either)",
    )
    assert is_better(repo, "m", new, ["cas", "recall"]) == (
        False,
        "metrics missing: cannot compare with production; skipped: CAS (not in production), "
        "recall (not in production)",
    )


def test_if_better_with_nothing_in_production_promotes(
    repo: Repository, settings: Settings
) -> None:
    new = _publish(repo, 99.0, 1)
    assert "production" not in repo.aliases("m")
    assert is_better(repo, "m", new, ["fid"]) == (True, "no version was in production")
    assert promote(settings, _job(new, "if_better")) == (True, "no version was in production")
    assert repo.aliases("m")["production"] == new


def test_if_better_refuses_when_metrics_are_missing(repo: Repository) -> None:
    _publish(repo, 10.0, 5, ("production",))
    with repo.staging("m") as staged:
        (staged / "generator.onnx").write_bytes(b"no metrics")
        new = repo.publish(staged, {**_manifest(1.0, 10), "metrics": {}}).version
    assert is_better(repo, "m", new, ["fid"]) == (
        False,
        "metrics missing: cannot compare with production; skipped: FID (not in new)",
    )
