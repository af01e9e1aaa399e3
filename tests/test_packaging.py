"""Packaging: declared dependency floors against the APIs the code calls, the declared floors installed where
this machine can, and the built wheel installed outside the checkout running the shipped protocols."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "cxraug"

#: (distribution, what the code relies on, the first release that has it, a pattern finding that use in src/)
API_FLOORS = [
    ("numpy", "np.bitwise_count (NumPy 2.0)", "2.0", r"np\.bitwise_count\("),
    ("pydicom", "the pydicom.pixels module (pydicom 3.0)", "3.0", r"from pydicom\.pixels import"),
    ("torchvision", "public transforms.v2 Transform.make_params/transform overrides (0.21; before, they were "
     "_get_params/_transform and the overrides were never called)", "0.21", r"def make_params\(self"),
    ("torch", "torchvision 0.21's torch", "2.6", r"from torchvision"),
    ("typer", "typing.Literal options: choices in --help (0.19)", "0.19", r"Literal\["),
    ("monai", "DiffusionModelUNet (1.4) beside NumPy 2 (1.4 requires numpy<2)", "1.5",
     r"from monai\.networks\.nets import DiffusionModelUNet"),
    ("pylibjpeg-libjpeg", "importable beside NumPy 2 (2.1 fails: 'numpy.core.multiarray failed to import')",
     "2.2", r"pylibjpeg"),
    ("pylibjpeg-openjpeg", "built against NumPy 2 (2.2.2 was yanked for it)", "2.3", r"pylibjpeg"),
    ("scipy", "first SciPy built against NumPy 2", "1.13", r"from scipy"),
    ("scikit-learn", "first scikit-learn built against NumPy 2", "1.4.2", r"from sklearn"),
    ("opencv-python-headless", "first OpenCV wheels built against NumPy 2", "4.10.0.84", r"import cv2"),
    ("matplotlib", "first Matplotlib built against NumPy 2", "3.8.4", r"import matplotlib"),
]


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _floors(requirements: list[str]) -> dict[str, Version]:
    out = {}
    for line in requirements:
        req = Requirement(line)
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
        out[req.name.lower()] = max(lows) if lows else Version("0")
    return out


def _source() -> str:
    return "\n".join(p.read_text() for p in sorted(SRC.rglob("*.py")))


def test_declared_floors_are_at_least_the_apis_the_code_calls() -> None:
    declared = _floors(_project()["dependencies"])
    source = _source()
    for dist, api, first, pattern in API_FLOORS:
        assert re.search(pattern, source), f"no longer used ({api}): drop its row from API_FLOORS"
        assert dist in declared, f"{dist} is used ({api}) but not a declared dependency"
        assert declared[dist] >= Version(first), f"{dist}>={declared[dist]} is declared, but {api} needs {first}"


def test_test_only_and_optional_packages_stay_out_of_the_runtime() -> None:
    project = _project()
    runtime = _floors(project["dependencies"])
    extras = project["optional-dependencies"]
    source = _source()
    assert "scikit-image" not in runtime and not re.search(r"^\s*(import|from) skimage", source, re.M)
    assert "scikit-image" in _floors(extras["dev"])
    for extra in ("mlflow", "tensorboard"):  # optional: imported inside functions only, with a one-line error
        assert extra not in runtime and extra in _floors(extras[extra]) and extra in _floors(extras["dev"])
        assert not re.search(rf"^(import|from) {extra}", source, re.M)


def _pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=900)


@pytest.mark.slow
def test_declared_floors_run(tmp_path: Path) -> None:
    """Installs the declared floors of NumPy, pydicom and the pylibjpeg plug-ins (binary wheels from the package
    index, into a folder put first on PYTHONPATH) and runs the DICOM and data-audit tests against them. Floors
    this machine cannot install alone (torch/torchvision pull GBs of CUDA wheels) are checked by the test above.
    Skips when the package index cannot be reached."""
    declared = _floors(_project()["dependencies"])
    pins = [f"{d}=={declared[d]}" for d in ("numpy", "pydicom", "pylibjpeg", "pylibjpeg-libjpeg",
                                              "pylibjpeg-openjpeg")]
    target = tmp_path / "floors"
    res = _pip("install", "-q", "--no-deps", "--only-binary", ":all:", "--target", str(target), *pins)
    if res.returncode != 0:
        pytest.skip(f"cannot install {pins} here: {res.stderr.strip().splitlines()[-1:]}")
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = subprocess.run([sys.executable, "-c", "import numpy, pydicom; print(numpy.__version__, "
                            "pydicom.__version__)"], capture_output=True, text=True, env=env)
    assert [Version(v) for v in probe.stdout.split()] == [declared["numpy"], declared["pydicom"]], probe.stderr
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                          "tests/test_data_dicom.py", "tests/test_data_audit.py"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


@pytest.mark.slow
def test_wheel_outside_the_checkout_runs_the_shipped_protocols(tmp_path: Path) -> None:
    """Builds the wheel from a clean copy of the source tree (no ``*.egg-info`` left by the editable install,
    whose stale file list setuptools would reuse) with ``python -m build --wheel --no-isolation`` (offline, with
    the setuptools of this venv), installs it with ``pip install --no-deps --no-index`` into a fresh ``python -m venv`` outside the checkout,
    and runs ``cxraug protocols`` and ``cxraug study quickstart --dry-run`` from an empty folder.

    The fresh venv gets cxraug's dependencies (torch & co., which cannot be downloaded offline) from this venv
    through one ``.pth`` line naming this venv's site-packages: a folder added that way is not scanned for
    ``.pth`` files, so the editable install of the checkout there (``__editable__.cxraug*.pth``) stays inert, and
    the wheel's copy in the fresh venv's own site-packages comes first on ``sys.path``. ``--system-site-packages``
    would not do: it exposes the base interpreter's packages, not this venv's. The test checks that cxraug and its
    protocols are imported from the fresh venv."""
    tree, dist = tmp_path / "tree", tmp_path / "dist"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".venv", "*.egg-info", ".git", "runs", "build",
                                                              "dist", "__pycache__", ".pytest_cache", "mlruns"))
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
                           capture_output=True, text=True, cwd=tree, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("cxraug-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_cxraug_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    res = _pip("--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel))
    assert res.returncode == 0, res.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import cxraug, cxraug.study.protocol as p; print(cxraug.__file__); "
                            "print(p.shipped_protocols()['quickstart'])"], capture_output=True, text=True, cwd=work)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout
    env = {**os.environ, "CXRAUG_PROGRESS": "0", "CXRAUG_CACHE": str(tmp_path / "cache")}
    listed = subprocess.run([str(venv / "bin" / "cxraug"), "protocols"], capture_output=True, text=True, cwd=work,
                            env=env)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert "quickstart" in names and len(names) == len(list((SRC / "configs").glob("*.yaml")))
    dry = subprocess.run([str(venv / "bin" / "cxraug"), "study", "quickstart", "--dry-run"], capture_output=True,
                         text=True, cwd=work, env=env, timeout=900)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "units" in (dry.stdout + dry.stderr) and not (work / "runs").exists()  # a dry run writes nothing
