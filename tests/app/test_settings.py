"""app.settings: the GAN_ environment, its validation, and fields that are gone."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from app.settings import Settings


def test_defaults_without_any_gan_variable() -> None:
    s = Settings()
    assert s.models_dir == Path("models") and s.max_n == 1024
    assert s.api_key is None and s.cors_origins == [] and s.queue_url is None


def test_gan_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GAN_MAX_N", "5")
    monkeypatch.setenv("GAN_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("GAN_BATCHING", "false")
    monkeypatch.setenv("GAN_API_KEY", "s3cret")
    monkeypatch.setenv("GAN_CORS_ORIGINS", '["https://a.example"]')
    s = Settings()
    assert s.max_n == 5 and s.models_dir == tmp_path and s.batching is False
    assert s.api_key is not None and s.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.cors_origins == ["https://a.example"]


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAN_MAX_N", "5")
    assert Settings(max_n=7).max_n == 7


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GAN_MAX_N", "0"),
        ("GAN_MAX_N", "100000"),
        ("GAN_MAX_N", "many"),
        ("GAN_DEVICE", "tpu"),
        ("GAN_LOG_LEVEL", "loud"),
        ("GAN_MAX_UPLOAD_BYTES", "10"),
        ("GAN_REQUEST_TIMEOUT_S", "0"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_a_list_that_is_not_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAN_CORS_ORIGINS", "https://a.example")
    with pytest.raises(SettingsError, match="cors_origins"):
        Settings()


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.max_n = 3  # type: ignore[misc]


def test_engine_process_is_no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "engine_process" not in Settings.model_fields
    monkeypatch.setenv("GAN_ENGINE_PROCESS", "true")  # an old deployment's variable: ignored
    s = Settings()
    assert not hasattr(s, "engine_process")
