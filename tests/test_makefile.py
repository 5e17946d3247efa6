"""The Makefile: the interpreter is checked before .venv is made, with a clear message."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def _install_recipe(*variables: str) -> list[str]:
    """The commands ``make install`` would run (-n: none is run; -W: as if out of date)."""
    made = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", ".venv/.installed", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.splitlines()


def test_the_interpreter_is_checked_before_the_venv_is_made() -> None:
    lines = _install_recipe(f"PYTHON={sys.executable}")
    check = next(i for i, line in enumerate(lines) if "sys.version_info" in line)
    venv = next(i for i, line in enumerate(lines) if " -m venv " in line)
    assert check < venv, lines
    ran = subprocess.run(lines[check], shell=True, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr  # the interpreter running the tests is supported


def test_an_unsupported_python_is_refused_by_version_with_what_to_do() -> None:
    # No second interpreter needed: narrow the accepted range past this one instead.
    lines = _install_recipe(f"PYTHON={sys.executable}", "PYTHON_OK=(9, 0) <= sys.version_info")
    check = next(line for line in lines if "sys.version_info" in line)
    ran = subprocess.run(check, shell=True, capture_output=True, text=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert ran.returncode == 1
    assert f"is Python {version}; gan-serve needs 3.11, 3.12 or 3.13" in ran.stderr, ran.stderr
    assert "make PYTHON=python3.12" in ran.stderr
