from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from training.config import (
    CONFIGS_DIR,
    REMOTE,
    TrainConfig,
    apply_overrides,
    load_config,
    parse_value,
    preset_names,
    preset_path,
)

ROOT = Path(__file__).resolve().parents[2]


def _error_locs(exc: ValidationError) -> list[tuple[str | int, ...]]:
    return [tuple(e["loc"]) for e in exc.errors()]


# --- presets --------------------------------------------------------------------------------


def test_preset_names_are_the_committed_tomls() -> None:
    assert preset_names() == ["cdcgan", "dcgan", "mlp-hinge", "paper"]
    assert preset_path("paper") == CONFIGS_DIR / "paper.toml"


@pytest.mark.parametrize("name", ["paper", "dcgan", "cdcgan"])
def test_every_preset_loads_and_round_trips(name: str) -> None:
    cfg = load_config(preset_path(name))
    assert isinstance(cfg, TrainConfig)
    # What the manifest records must validate back to the same config.
    assert TrainConfig.model_validate(cfg.model_dump(mode="json")) == cfg


def test_paper_preset_is_the_2014_setup() -> None:
    cfg = load_config(preset_path("paper"))
    assert cfg.architecture == "paper-mlp"
    assert not cfg.conditional
    assert cfg.prior == "uniform"
    assert cfg.batch_size == 100
    assert cfg.d_steps == 1
    assert cfg.optimizer.name == "sgd"
    assert cfg.optimizer.momentum == 0.5
    assert cfg.optimizer.momentum_final == 0.7
    assert cfg.optimizer.lr_decay == pytest.approx(1 / 1.000004, rel=1e-9)
    assert cfg.output_range == (0.0, 1.0)
    assert cfg.architecture_name == "paper-mlp"


def test_dcgan_presets_share_networks_and_optimizer() -> None:
    dcgan = load_config(preset_path("dcgan"))
    cdcgan = load_config(preset_path("cdcgan"))
    assert dcgan.architecture == cdcgan.architecture == "dcgan"
    assert (dcgan.conditional, cdcgan.conditional) == (False, True)
    assert dcgan.loss == cdcgan.loss == "hinge"
    assert dcgan.optimizer.name == "adam"
    assert dcgan.output_range == (-1.0, 1.0)
    assert (dcgan.architecture_name, cdcgan.architecture_name) == ("dcgan", "cdcgan")
    for part in ("network", "optimizer", "latent_dim", "prior", "batch_size"):
        assert getattr(dcgan, part) == getattr(cdcgan, part)


@pytest.mark.parametrize("bad", ["nope", "paper.toml", ""])
def test_unknown_preset_is_a_value_error_listing_known_ones(bad: str) -> None:
    with pytest.raises(ValueError, match="known: cdcgan, dcgan, mlp-hinge, paper"):
        preset_path(bad)


# --- overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200", 200),
        ("0.001", 0.001),
        ("1e-3", 1e-3),
        ("true", True),
        ("false", False),
        ('"quoted"', "quoted"),
        ("adam", "adam"),
        ("builtin:mnist", "builtin:mnist"),
        ("/data/digits.npz", "/data/digits.npz"),
        ("[1, 2]", [1, 2]),
    ],
)
def test_parse_value_reads_toml_and_keeps_bare_words(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_set_overrides_are_typed_and_nested() -> None:
    cfg = load_config(
        preset_path("paper"),
        [
            "max_steps=200",
            "optimizer.lr_g=0.001",
            "conditional=true",
            "network.g_hidden=32",
            "dataset.source=/data/digits.npz",
            " batch_size = 8 ",
        ],
    )
    assert cfg.max_steps == 200
    assert cfg.optimizer.lr_g == 0.001
    assert cfg.conditional is True
    assert cfg.network.g_hidden == 32
    assert cfg.dataset.source == "/data/digits.npz"
    assert cfg.batch_size == 8
    # Siblings of an overridden nested key keep the preset's values.
    assert cfg.optimizer.name == "sgd"
    assert cfg.optimizer.lr_d == 0.1
    assert cfg.optimizer.momentum_final == 0.7
    assert cfg.network.d_hidden == 240
    assert cfg.dataset.val_fraction == 0.1


def test_dict_overrides_work_like_set_strings() -> None:
    path = preset_path("dcgan")
    from_strings = load_config(path, ["max_steps=7", "optimizer.beta1=0.0"])
    from_dict = load_config(path, {"max_steps": 7, "optimizer.beta1": 0.0})
    assert from_strings == from_dict
    assert from_dict.max_steps == 7 and from_dict.optimizer.beta1 == 0.0


def test_value_containing_equals_sign_is_kept_whole() -> None:
    cfg = load_config(preset_path("dcgan"), ["dataset.source=/data/a=b.npz"])
    assert cfg.dataset.source == "/data/a=b.npz"


def test_override_without_equals_sign_is_refused() -> None:
    with pytest.raises(ValueError, match="not key=value"):
        load_config(preset_path("paper"), ["max_steps"])


def test_apply_overrides_returns_a_new_dict_and_leaves_the_input_alone() -> None:
    data = {"max_steps": 5, "optimizer": {"name": "sgd", "lr_g": 0.1}}
    out = apply_overrides(data, {"optimizer.lr_g": 0.5, "network.width": 8})
    assert out == {
        "max_steps": 5,
        "optimizer": {"name": "sgd", "lr_g": 0.5},
        "network": {"width": 8},
    }
    assert data == {"max_steps": 5, "optimizer": {"name": "sgd", "lr_g": 0.1}}


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "loc"),
    [
        ("max_stpes=3", ("max_stpes",)),
        ("optimizer.lr=0.1", ("optimizer", "lr")),
        ("network.depth=3", ("network", "depth")),
    ],
)
def test_unknown_field_is_a_validation_error_naming_it(override: str, loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        load_config(preset_path("paper"), [override])
    assert loc in _error_locs(info.value)
    assert loc[-1] in str(info.value)


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_non_positive_max_steps_is_refused(steps: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_config(preset_path("dcgan"), [f"max_steps={steps}"])
    assert _error_locs(info.value) == [("max_steps",)]


@pytest.mark.parametrize(
    ("override", "loc"),
    [
        ("max_steps=lots", ("max_steps",)),
        ("architecture=resnet", ("architecture",)),
        ("loss=wasserstein", ("loss",)),
        ("dataset.val_fraction=0.5", ("dataset", "val_fraction")),
        ("optimizer.name=rmsprop", ("optimizer", "name")),
        ("ema_decay=1.0", ("ema_decay",)),
    ],
)
def test_out_of_schema_values_are_field_level_errors(override: str, loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        load_config(preset_path("dcgan"), [override])
    assert loc in _error_locs(info.value)


def test_momentum_final_with_adam_is_refused() -> None:
    with pytest.raises(ValidationError, match="momentum_final applies to the sgd optimizer only"):
        load_config(preset_path("dcgan"), ["optimizer.momentum_final=0.9"])
    # The paper preset sets momentum_final, so switching it to Adam is refused too...
    with pytest.raises(ValidationError, match="momentum_final"):
        load_config(preset_path("paper"), ["optimizer.name=adam"])
    # ...while SGD with a momentum ramp is fine.
    cfg = load_config(preset_path("dcgan"), ["optimizer.name=sgd", "optimizer.momentum_final=0.9"])
    assert cfg.optimizer.momentum_final == 0.9


def test_config_is_frozen() -> None:
    cfg = TrainConfig()
    with pytest.raises(ValidationError):
        cfg.max_steps = 3  # type: ignore[misc]


def test_config_module_imports_no_torch() -> None:
    code = (
        "import sys, training.config; "
        "assert 'torch' not in sys.modules, 'training.config loaded torch'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_a_remote_config_names_built_in_data_only_and_the_cli_may_name_paths() -> None:
    paper = preset_path("paper")
    local = load_config(paper, {"dataset.source": "/data/digits.npz"})
    assert local.dataset.source == "/data/digits.npz"
    assert load_config(paper, {"dataset.source": "builtin:mnist"}, context=REMOTE)
    for source in ("/etc", "models", "core/data/mnist_5k.npz", "./builtin:mnist", "builtin:../x"):
        with pytest.raises(ValidationError, match="paths on the server are refused"):
            load_config(paper, {"dataset.source": source}, context=REMOTE)


@pytest.mark.parametrize(
    "overrides",
    [
        {"optimizer.lr_min": float("inf")},
        {"optimizer.lr_g": float("nan")},
        {"optimizer.beta1": float("-inf")},
        {"dataset.split_seed": 2**64},
        {"dataset.split_seed": -1},
        {"eval_every": 10**12},
        {"checkpoint_every": 10**12},
        {"log_every": 10**12},
        {"optimizer.momentum_ramp_steps": 10**12},
        {"usefulness.classifier_steps": 10**6},  # an export a client could stall for hours
        {"usefulness.nas_fraction": 0},
        {"usefulness.k": 0},
        {"optimizer.lr_min": 0.01, "optimizer.lr_d": 0.001},  # a floor above a rate
    ],
    ids=lambda o: ",".join(o),
)
def test_every_number_is_finite_and_bounded(overrides: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        load_config(preset_path("paper"), overrides)
