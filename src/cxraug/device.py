"""Device selection and reproducibility switches."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from cxraug.errors import CxraugError


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU. ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CxraugError("--device cuda was requested but no CUDA device is available (use --device auto or cpu)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise CxraugError(f"unknown device {device!r}; use auto, cpu or cuda[:N]")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(n: int | None = None) -> int:
    """Set torch intra-op threads explicitly (Ray workers otherwise get OMP_NUM_THREADS=1)."""
    n = n or int(os.environ.get("CXRAUG_THREADS", "0")) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
