"""The one-way layer order of docs/ARCHITECTURE.md: `lint-imports` keeps the pyproject contracts, and the
contracts cover every package and module of cxraug (a new package cannot slip past them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import cxraug

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_lint_imports_keeps_the_layer_contracts() -> None:
    pytest.importorskip("importlinter", reason="import-linter is not installed (it is in the dev extra)")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is installed but its lint-imports command is not on PATH"
    run = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_contracts_name_every_package_and_module() -> None:
    layers, helpers = _contracts()
    assert layers["type"] == "layers" and helpers["type"] == "forbidden"
    layered = {f"cxraug.{name}" for name in layers["layers"]}
    assert set(helpers["forbidden_modules"]) == layered
    src = Path(cxraug.__file__).parent
    present = {f"cxraug.{p.stem}" for p in src.glob("*.py") if p.stem != "__init__"}
    present |= {f"cxraug.{p.name}" for p in src.iterdir() if (p / "__init__.py").is_file()}
    assert present == layered | set(helpers["source_modules"]), "add the new module to a contract in pyproject.toml"
