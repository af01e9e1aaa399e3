"""The provenance stamp of a run: what code, on what machine, started how, on which data.

``run_stamp(device, data_fingerprint)`` -> ``cxraug`` version, ``git_commit`` / ``git_dirty`` of the cxraug
source when it runs from a git checkout (None for an installed wheel), ``command`` line, ``cwd``, Python,
platform, ``torch`` / ``cuda`` / ``cudnn`` versions, ``device`` and ``device_name``, ``versions`` of the main
libraries, the ``data_fingerprint`` and the UTC ``started`` time. The same stamp goes into ``run.json``,
``metrics.json``, generator checkpoints and ``study.json``; it holds only strings, numbers, booleans and None,
so a weights-only checkpoint can carry it.

``with run_record(path, record) as rec:`` writes ``record`` with ``status: running`` before the work starts and
again when it ends: ``finished`` with what the block added to ``rec``, or ``failed`` / ``interrupted`` with the
error, so a running, crashed or killed run always has its settings on disk.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

import torch

from cxraug import __version__

LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "lightning-fabric", "pydantic", "monai",
             "pydicom", "ray", "mlflow", "tensorboard")


def versions() -> dict[str, str]:
    """Installed versions of the libraries that shape the numbers (absent ones left out)."""
    out = {}
    for pkg in LIBRARIES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout cxraug's own source files are tracked in; (None, None) otherwise."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)

    try:
        if git("ls-files", "--error-unmatch", Path(__file__).name).returncode != 0:
            return None, None  # an installed copy (site-packages), even inside someone's repository
        commit = git("rev-parse", "HEAD").stdout.strip() or None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        model = ""
    return f"{model or platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def run_stamp(device: str | torch.device = "cpu", data_fingerprint: str | None = None) -> dict[str, Any]:
    """The stamp of a run on ``device`` (see the module docstring)."""
    dev = torch.device(device)
    commit, dirty = git_state()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"cxraug": __version__, "git_commit": commit, "git_dirty": dirty, "command": shlex.join(sys.argv),
            "cwd": os.getcwd(), "python": platform.python_version(), "platform": platform.platform(),
            "torch": str(torch.__version__), "cuda": torch.version.cuda, "cudnn": cudnn, "device": str(dev),
            "device_name": device_name(dev), "versions": versions(), "data_fingerprint": data_fingerprint,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


@contextmanager
def run_record(path: str | Path, record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``run.json`` around a run (module docstring); ``wall_s`` is the time spent in the block."""
    from cxraug import io

    io.write_json(path, {**record, "status": "running"})
    t0 = time.time()
    try:
        yield record
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        io.write_json(path, {**record, "status": status, "error": f"{type(exc).__name__}: {exc}",
                             "wall_s": time.time() - t0})
        raise
    record.update(status="finished", wall_s=time.time() - t0)
    io.write_json(path, record)
