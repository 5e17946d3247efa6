from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from core.datasets import load_dataset
from core.errors import IntegrityError, InvalidInput
from core.repository import MANIFEST, Manifest, Repository
from tests.conftest import tiny_config
from training.export import OPSET, PARITY_ATOL, ExportError, publish_run
from training.loop import CHECKPOINT, train

ROLES = ("generator", "discriminator")
NAMES = ("tiny-gan", "tiny-cgan")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny paper-mlp run, trained once for the publishing tests."""
    run_dir = tmp_path_factory.mktemp("run")
    train(tiny_config("tiny-gan"), run_dir)
    return run_dir


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _feeds(manifest: Manifest, role: str, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    if role == "generator":
        feeds = {"z": rng.standard_normal((batch, manifest.latent.dim), dtype=np.float32)}
    else:
        lo, hi = manifest.output_range
        shape = (batch, *manifest.image_shape)
        feeds = {"image": rng.uniform(lo, hi, shape).astype(np.float32)}
    if manifest.conditional:
        feeds["label"] = np.arange(batch, dtype=np.int64) % manifest.num_classes
    return feeds


def _subfolders(folder: Path) -> list[str]:
    """Version folders, and any staging folder left behind."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


# --- what a publish writes ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_publish_writes_a_sealed_version(template_repo: Path, name: str) -> None:
    repo = Repository(template_repo)
    assert repo.versions(name) == [1]
    assert repo.aliases(name) == {"production": 1}
    manifest = repo.verify(name, 1)
    folder = repo.version_dir(name, 1)

    files = {p.name for p in folder.iterdir()}
    artifacts = {f"{role}.{kind}" for role in ROLES for kind in ("onnx", "pt")} | {"samples.png"}
    assert files == artifacts | {MANIFEST}  # nothing else: no external-data sidecar
    assert set(manifest.artifacts) == artifacts
    for file, digest in manifest.artifacts.items():
        assert _sha256(folder / file) == digest

    cfg = tiny_config(name)
    assert manifest.name == name and manifest.version == 1
    assert manifest.architecture == cfg.architecture_name
    assert (manifest.latent.dim, manifest.latent.prior) == (cfg.latent_dim, cfg.prior)
    assert manifest.image_shape == [1, 28, 28]
    assert tuple(manifest.output_range) == cfg.output_range
    assert manifest.num_classes == (10 if cfg.conditional else 0)
    assert manifest.class_names == ([str(i) for i in range(10)] if cfg.conditional else [])
    assert manifest.opset == OPSET
    assert manifest.parent_version is None
    label = ["label"] if cfg.conditional else []
    assert manifest.tensors == {
        "generator": {"inputs": ["z", *label], "outputs": ["image"]},
        "discriminator": {"inputs": ["image", *label], "outputs": ["logit"]},
    }
    assert manifest.training["steps"] == cfg.max_steps
    assert manifest.training["weights"] == "ema"
    assert manifest.training["config"] == cfg.model_dump(mode="json")
    train_split, _ = load_dataset("builtin:mnist").split(0.1, 0)
    assert manifest.dataset["sha256"] == train_split.sha256()
    assert manifest.dataset["size"] == len(train_split.labels)
    assert manifest.metrics == {}  # published with evaluate=False

    assert manifest.parity["atol"] == PARITY_ATOL
    for role in ROLES:
        for diff in manifest.parity[role].values():
            assert 0 <= diff <= PARITY_ATOL


@pytest.mark.parametrize("name", NAMES)
def test_onnx_graphs_are_self_contained_with_the_contract_names(
    template_repo: Path, name: str
) -> None:
    repo = Repository(template_repo)
    manifest = repo.manifest(name, 1)
    folder = repo.version_dir(name, 1)
    for role in ROLES:
        # Loaded from bytes, so any external-data reference would be left unresolved.
        model = onnx.load_model_from_string((folder / f"{role}.onnx").read_bytes())
        onnx.checker.check_model(model)
        assert all(
            init.data_location != onnx.TensorProto.EXTERNAL for init in model.graph.initializer
        )
        inputs = [i.name for i in model.graph.input]
        outputs = [o.name for o in model.graph.output]
        assert inputs == manifest.tensors[role]["inputs"]
        assert outputs == manifest.tensors[role]["outputs"]
        batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param and not batch_dim.dim_value  # a named, dynamic axis
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == OPSET


@pytest.mark.parametrize("name", NAMES)
def test_onnx_has_a_dynamic_batch_and_matches_torchscript(template_repo: Path, name: str) -> None:
    repo = Repository(template_repo)
    manifest = repo.manifest(name, 1)
    folder = repo.version_dir(name, 1)
    for role in ROLES:
        session = ort.InferenceSession(
            str(folder / f"{role}.onnx"), providers=["CPUExecutionProvider"]
        )
        scripted = torch.jit.load(str(folder / f"{role}.pt"))
        for batch in (1, 33):
            feeds = _feeds(manifest, role, batch)
            (out,) = session.run(None, feeds)
            expected_shape = (batch, *manifest.image_shape) if role == "generator" else (batch, 1)
            assert out.shape == expected_shape
            assert out.dtype == np.float32
            with torch.no_grad():
                ts_out = scripted(*(torch.from_numpy(v) for v in feeds.values())).numpy()
            np.testing.assert_allclose(out, ts_out, atol=1e-4, rtol=0)
            if role == "generator":
                lo, hi = manifest.output_range
                assert out.min() >= lo and out.max() <= hi


def test_samples_grid_is_a_png(template_repo: Path) -> None:
    data = (template_repo / "tiny-cgan" / "1" / "samples.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")


# --- the manifest ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_manifest_round_trips(template_repo: Path, name: str) -> None:
    m = Repository(template_repo).manifest(name, 1)
    assert Manifest.from_dict(m.to_dict()) == m
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    on_disk = json.loads((template_repo / name / "1" / MANIFEST).read_text())
    assert Manifest.from_dict(on_disk) == m


# --- versions, aliases, integrity -----------------------------------------------------------


def test_second_publish_is_version_2_and_moves_production(models_dir: Path, tiny_run: Path) -> None:
    repo = Repository(models_dir)
    before = repo.manifest("tiny-gan", 1)
    published = publish_run(
        tiny_run,
        repo,
        "tiny-gan",
        evaluate=False,
        parent_version=1,
        extra_training={"command": "pytest"},
    )
    assert published.version == 2
    assert repo.versions("tiny-gan") == [1, 2]
    assert repo.aliases("tiny-gan") == {"production": 2}
    assert repo.resolve("tiny-gan") == 2
    assert repo.verify("tiny-gan", 2) == published
    assert published.parent_version == 1
    assert published.training["command"] == "pytest"
    assert repo.manifest("tiny-gan", 1) == before  # versions are immutable
    assert repo.versions("tiny-cgan") == [1]  # other models untouched
    assert _subfolders(models_dir / "tiny-gan") == ["1", "2"]


def test_a_stopped_run_is_published_only_when_asked(tmp_path: Path) -> None:
    steps = iter(range(100))
    result = train(tiny_config("tiny-gan"), tmp_path / "run", should_stop=lambda: next(steps) == 2)
    assert result.status == "stopped" and result.step == 2
    repo = Repository(tmp_path / "models")
    with pytest.raises(ExportError, match="stopped at step 2 of 4"):
        publish_run(tmp_path / "run", repo, "partial", evaluate=False)
    assert not (tmp_path / "models" / "partial").exists() or repo.versions("partial") == []
    published = publish_run(tmp_path / "run", repo, "partial", evaluate=False, partial=True)
    assert published.training["steps"] == 2


def test_a_select_best_run_publishes_the_kept_evaluation(tmp_path: Path) -> None:
    from training import networks
    from training.loop import BEST, Best

    cfg = tiny_config("tiny-gan", max_steps=3, eval_every=1, select="best")
    scores = iter([6.0, 2.0, 4.0])
    train(cfg, tmp_path / "run", evaluate=lambda g: {"fid_train": next(scores)})
    repo = Repository(tmp_path / "models")
    published = publish_run(tmp_path / "run", repo, "best", evaluate=False)
    assert published.training["steps"] == 3
    assert published.training["selected"] == {"step": 2, "fid_train": 2.0}

    # The ONNX generator is step 2's EMA generator, not step 3's.
    kept = torch.load(tmp_path / "run" / BEST, weights_only=True)
    g = networks.build(cfg, (1, 28, 28), 10)[0]
    g.load_state_dict(kept["g"])
    feeds = _feeds(published, "generator", 4)
    with torch.no_grad():
        expected = g.eval()(torch.from_numpy(feeds["z"])).numpy()
    version = repo.version_dir("best", published.version)
    session = ort.InferenceSession(str(version / "generator.onnx"))
    np.testing.assert_allclose(session.run(None, feeds)[0], expected, atol=PARITY_ATOL)

    # Without its kept weights the run cannot be published as asked.
    (tmp_path / "run" / BEST).unlink()
    with pytest.raises(FileNotFoundError, match="best.pt is missing"):
        publish_run(tmp_path / "run", repo, "best", evaluate=False)
    assert repo.versions("best") == [1]
    assert Best.read(tmp_path / "run" / BEST) is None


def test_tampered_artifact_fails_verification_but_manifest_still_reads(models_dir: Path) -> None:
    repo = Repository(models_dir)
    path = repo.version_dir("tiny-gan", 1) / "generator.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="generator.onnx"):
        repo.verify("tiny-gan", 1)
    manifest = repo.manifest("tiny-gan", 1)
    assert manifest.version == 1
    assert manifest.artifacts["generator.onnx"] != _sha256(path)
    repo.verify("tiny-cgan", 1)  # the other model is fine


def test_missing_artifact_fails_verification(models_dir: Path) -> None:
    repo = Repository(models_dir)
    (repo.version_dir("tiny-cgan", 1) / "discriminator.pt").unlink()
    with pytest.raises(IntegrityError, match="discriminator.pt"):
        repo.verify("tiny-cgan", 1)


# --- failed publishes leave nothing behind --------------------------------------------------


@pytest.fixture
def diverged_run(tmp_path: Path, tiny_run: Path) -> Path:
    """The tiny run with NaN serving weights, as after a diverged training."""
    run_dir = tmp_path / "diverged"
    run_dir.mkdir()
    ckpt = torch.load(tiny_run / CHECKPOINT, map_location="cpu", weights_only=True)
    for tensor in ckpt["g_ema"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    torch.save(ckpt, run_dir / CHECKPOINT)
    return run_dir


def test_bad_name_publishes_nothing(models_dir: Path, tiny_run: Path) -> None:
    with pytest.raises(InvalidInput, match="invalid name 'Bad Name'"):
        publish_run(tiny_run, Repository(models_dir), "Bad Name", evaluate=False)
    assert sorted(p.name for p in models_dir.iterdir()) == ["tiny-cgan", "tiny-gan"]


def test_failed_parity_check_publishes_nothing(models_dir: Path, diverged_run: Path) -> None:
    repo = Repository(models_dir)
    with pytest.raises(ExportError, match="generator: exported outputs differ"):
        publish_run(diverged_run, repo, "tiny-gan", evaluate=False)
    assert repo.versions("tiny-gan") == [1]
    assert repo.aliases("tiny-gan") == {"production": 1}
    assert _subfolders(models_dir / "tiny-gan") == ["1"]


def test_publish_with_an_invalid_alias_publishes_nothing(models_dir: Path, tiny_run: Path) -> None:
    # "latest" is reserved; the publish fails, and it must fail whole: a version that
    # appears although publish_run raised is one no caller knows it made.
    repo = Repository(models_dir)
    with pytest.raises(InvalidInput, match="invalid alias 'latest'"):
        publish_run(tiny_run, repo, "tiny-gan", aliases=["latest"], evaluate=False)
    assert repo.versions("tiny-gan") == [1]
    assert repo.aliases("tiny-gan") == {"production": 1}
    assert _subfolders(models_dir / "tiny-gan") == ["1"]
