"""The documentation and deployment files agree with the settings the app really reads."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {f"GAN_{name.upper()}" for name in Settings.model_fields}


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert not [var for var in sorted(SETTINGS) if f"`{var}`" not in readme]


def test_compose_and_dockerfile_name_only_real_settings() -> None:
    for file in ("docker-compose.yml", "Dockerfile"):
        used = set(re.findall(r"\bGAN_[A-Z_]+\b", (ROOT / file).read_text()))
        assert used, file
        assert used <= SETTINGS, f"{file} sets unknown variables: {sorted(used - SETTINGS)}"


def test_the_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make serve" in readme and "make test" in readme
