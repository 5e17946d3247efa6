"""The repository format: versions, aliases, integrity and atomic publishing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.errors import IntegrityError, InvalidInput, NotFound
from core.repository import Manifest, ManifestError, Repository, parse_version


def test_versions_aliases_and_resolution(models_dir: Path) -> None:
    repo = Repository(models_dir)
    assert repo.models() == ["tiny-cgan", "tiny-gan"]
    assert repo.versions("tiny-gan") == [1]
    assert repo.aliases("tiny-gan") == {"production": 1}
    assert repo.resolve("tiny-gan", None) == repo.resolve("tiny-gan", "production") == 1
    assert repo.resolve("tiny-gan", "latest") == repo.resolve("tiny-gan", "1") == 1
    with pytest.raises(NotFound):
        repo.resolve("tiny-gan", 2)
    with pytest.raises(NotFound):
        repo.resolve("tiny-gan", "staging")
    with pytest.raises(NotFound):
        repo.versions("absent")
    with pytest.raises(InvalidInput):
        repo.versions("../etc")
    with pytest.raises(InvalidInput):
        repo.versions("a\x00b")


def test_without_a_production_alias_the_newest_version_serves(models_dir: Path) -> None:
    repo = Repository(models_dir)
    (models_dir / "tiny-gan" / "aliases.json").unlink()
    v1 = repo.version_dir("tiny-gan", 1)
    shutil.copytree(v1, v1.parent / "2")
    assert repo.resolve("tiny-gan", None) == 2


def test_manifest_round_trip_and_schema_checks(models_dir: Path) -> None:
    repo = Repository(models_dir)
    m = repo.manifest("tiny-cgan", 1)
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert m.conditional and m.tensors["generator"]["inputs"] == ["z", "label"]
    bad = m.to_dict() | {"schema_version": 99}
    with pytest.raises(ManifestError):
        Manifest.from_dict(bad)
    with pytest.raises(ManifestError):
        Manifest.from_dict(m.to_dict() | {"artifacts": {"../x": "0"}})
    with pytest.raises(ManifestError):
        Manifest.from_dict({k: v for k, v in m.to_dict().items() if k != "latent"})


def test_a_tampered_artifact_is_refused(models_dir: Path) -> None:
    repo = Repository(models_dir)
    assert repo.verify("tiny-gan", 1).version == 1
    path = repo.version_dir("tiny-gan", 1) / "discriminator.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="sha256"):
        repo.verify("tiny-gan", 1)
    path.unlink()
    with pytest.raises(IntegrityError, match="unreadable"):
        repo.verify("tiny-gan", 1)


def test_publish_is_atomic_and_numbers_versions(models_dir: Path) -> None:
    repo = Repository(models_dir)
    manifest = repo.manifest("tiny-gan", 1).to_dict()
    with repo.staging("tiny-gan") as staged:
        (staged / "generator.onnx").write_bytes(b"half")
        assert repo.versions("tiny-gan") == [1]  # staged work is invisible
    with pytest.raises(RuntimeError), repo.staging("tiny-gan") as staged:
        (staged / "generator.onnx").write_bytes(b"half")
        raise RuntimeError("export failed")
    assert repo.versions("tiny-gan") == [1]
    assert not [p for p in (models_dir / "tiny-gan").iterdir() if p.name.startswith(".staging")]

    with repo.staging("tiny-gan") as staged:
        for f in manifest["artifacts"]:
            shutil.copy(repo.version_dir("tiny-gan", 1) / f, staged / f)
        sealed = repo.publish(staged, manifest, ["canary"])
    assert sealed.version == 2 and repo.versions("tiny-gan") == [1, 2]
    assert repo.aliases("tiny-gan") == {"production": 1, "canary": 2}
    assert repo.verify("tiny-gan", 2).artifacts == sealed.artifacts
    assert oct(repo.version_dir("tiny-gan", 2).stat().st_mode & 0o777) == "0o755"


def test_a_repository_over_a_read_only_base(models_dir: Path, tmp_path: Path) -> None:
    """Published versions and aliases go to the writable layer; the base is never written."""
    before = sorted(str(p.relative_to(models_dir)) for p in models_dir.rglob("*"))
    repo = Repository(tmp_path / "published", base=models_dir)
    assert repo.models() == ["tiny-cgan", "tiny-gan"] and repo.versions("tiny-gan") == [1]
    assert repo.verify("tiny-gan", 1).version == 1
    manifest = repo.manifest("tiny-gan", 1).to_dict()
    with repo.staging("tiny-gan") as staged:
        for f in manifest["artifacts"]:
            shutil.copy(repo.version_dir("tiny-gan", 1) / f, staged / f)
        sealed = repo.publish(staged, manifest, ["canary"])
    assert sealed.version == 2 and repo.versions("tiny-gan") == [1, 2]  # numbered after the base
    assert repo.version_dir("tiny-gan", 2) == tmp_path / "published" / "tiny-gan" / "2"
    repo.set_alias("tiny-gan", "production", 2)  # the writable layer's alias wins
    assert repo.aliases("tiny-gan") == {"production": 2, "canary": 2}
    assert Repository(models_dir).aliases("tiny-gan") == {"production": 1}
    assert sorted(str(p.relative_to(models_dir)) for p in models_dir.rglob("*")) == before
    same = Repository(models_dir, base=models_dir)  # one folder is one layer, not two
    assert same.versions("tiny-gan") == [1]


def test_metrics_computed_later_amend_the_manifest_and_nothing_else(
    models_dir: Path, tmp_path: Path
) -> None:
    repo = Repository(models_dir)
    path = repo.version_dir("tiny-cgan", 1) / "model.json"
    before = json.loads(path.read_text())
    amended = repo.amend_metrics("tiny-cgan", 1, "usefulness", {"cas": 0.9})
    assert amended == repo.verify("tiny-cgan", 1)  # the artifacts' sha256s still hold
    assert json.loads(path.read_text()) == {**before, "metrics": {"usefulness": {"cas": 0.9}}}
    assert path.read_text().endswith("}\n")  # written as publish writes it
    repo.amend_metrics("tiny-cgan", 1, "usefulness", {"cas": 0.8})  # replaced, not merged
    assert repo.manifest("tiny-cgan", 1).metrics == {"usefulness": {"cas": 0.8}}
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    layered = Repository(tmp_path / "published", base=models_dir)
    with pytest.raises(NotFound, match="no tiny-gan v1 to amend"):  # the base is read-only
        layered.amend_metrics("tiny-gan", 1, "usefulness", {})


def test_alias_rules(models_dir: Path) -> None:
    repo = Repository(models_dir)
    for bad in ("latest", "7", "Bad", "../x"):
        with pytest.raises(InvalidInput):
            repo.set_alias("tiny-gan", bad, 1)
    with pytest.raises(NotFound):
        repo.set_alias("tiny-gan", "canary", 3)
    repo.set_alias("tiny-gan", "canary", 1)
    assert repo.aliases("tiny-gan")["canary"] == 1


def test_a_torn_aliases_file_is_an_integrity_error(models_dir: Path) -> None:
    (models_dir / "tiny-gan" / "aliases.json").write_text("{not json")
    with pytest.raises(IntegrityError):
        Repository(models_dir).aliases("tiny-gan")


@pytest.mark.parametrize(
    ("ref", "number"), [("7", 7), ("007", 7), (7, 7), ("production", None), ("latest", None)]
)
def test_a_version_reference_is_ascii_digits_or_a_name(ref: str | int, number: int | None) -> None:
    assert parse_version(ref) == number


@pytest.mark.parametrize("ref", ["١٢٣", "²", "𝟑", "9" * 5000, "-1", " 3", "3 ", "", "Prod", "a/b"])
def test_anything_else_is_an_invalid_version(ref: str) -> None:
    with pytest.raises(NotFound, match="invalid version") as e:
        parse_version(ref)
    assert e.value.field == "version"
