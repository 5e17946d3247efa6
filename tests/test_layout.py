"""The floor plan, checked: which package may import which, and how big modules grow.

core/      numpy, Pillow and the standard library only
training/  core, never app
app/       core, and of training only its pure contracts (config, events)
gan_client nothing of ours: it installs on its own (client/pyproject.toml)
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"core": ROOT / "core", "app": ROOT / "app", "training": ROOT / "training"}
PACKAGES["gan_client"] = ROOT / "client" / "gan_client"
STDLIB = set(sys.stdlib_module_names)


def _imports(package: str) -> dict[Path, set[str]]:
    """Every module's imported names (absolute, dotted), by file."""
    out = {}
    for path in PACKAGES[package].rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in PACKAGES:  # from training import events: a module by name
                    names |= {f"{node.module}.{alias.name}" for alias in node.names}
                else:
                    names.add(node.module)
        out[path] = names
    return out


def _offences(package: str, allowed: set[str], also: set[str] = frozenset()) -> list[str]:
    bad = []
    for path, names in _imports(package).items():
        for name in names:
            top = name.partition(".")[0]
            if top in STDLIB or top in allowed or name in also or top == package:
                continue
            bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return sorted(bad)


def test_core_imports_numpy_pillow_and_the_standard_library_only() -> None:
    assert _offences("core", {"numpy", "PIL"}) == []


def test_training_imports_core_but_never_app() -> None:
    offences = _offences("training", {"core", "numpy", "PIL", "torch", "onnx", "onnxruntime"})
    assert [o for o in offences if "pydantic" not in o] == []
    assert not any(" app" in o for o in offences)


def test_the_server_takes_only_pure_contracts_from_training() -> None:
    allowed = {"core", "numpy", "PIL", "fastapi", "starlette", "pydantic", "pydantic_core"}
    allowed |= {"pydantic_settings"}
    allowed |= {"uvicorn", "onnxruntime", "prometheus_client", "huey", "redis", "torch"}
    assert _offences("app", allowed, also={"training.config", "training.events"}) == []


def test_the_client_needs_nothing_of_ours_and_only_httpx_and_numpy() -> None:
    offences = _offences("gan_client", {"httpx", "numpy"})
    extras = {"client/gan_client/dataset.py": "torch", "client/gan_client/exports.py": "PIL"}
    for offence in offences:
        module, imported = offence.split(" imports ")
        assert imported.startswith(extras[module]), offence
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    deps = {d.split(">")[0].split("=")[0].split("<")[0] for d in project["dependencies"]}
    assert deps == {"httpx", "numpy"}
    assert [d.split("=")[0] for d in project["optional-dependencies"]["torch"]] == ["torch"]
    assert [d.split(">")[0] for d in project["optional-dependencies"]["tar"]] == ["pillow"]


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        ("core.errors, core.latent, core.imaging, core.decoding, core.repository, core.datasets",
         {"torch", "fastapi", "pydantic", "onnxruntime", "app", "training"}),
        ("training.config, training.events", {"torch", "fastapi", "app"}),
        ("gan_client, gan_client.cli",
         {"torch", "fastapi", "pydantic", "onnxruntime", "PIL", "app", "core", "training"}),
    ],
)  # fmt: skip
def test_importing_a_package_loads_nothing_it_must_not(modules: str, absent: set[str]) -> None:
    code = f"import sys, {modules}; print(sorted({{m.partition('.')[0] for m in sys.modules}}))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert absent.isdisjoint(eval(out.stdout)), out.stdout


def test_no_folder_holds_more_than_a_dozen_modules_and_no_module_500_lines() -> None:
    for root in PACKAGES.values():
        for folder in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
            modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
            assert len(modules) <= 12, f"{folder.relative_to(ROOT)}: {len(modules)} modules"
        for path in root.rglob("*.py"):
            lines = len(path.read_text().splitlines())
            assert lines <= 500, f"{path.relative_to(ROOT)}: {lines} lines"
