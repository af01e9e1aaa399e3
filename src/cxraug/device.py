"""Device selection, reproducibility switches and the Lightning Fabric set-up shared by every trainer."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import numpy as np
import torch

from cxraug.errors import CxraugError

if TYPE_CHECKING:
    from lightning_fabric import Fabric


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


def make_fabric(device: str, precision: str = "32", devices: int = 1) -> "Fabric":
    """Fabric for ``device`` (auto/cpu/cuda); ``precision`` ``auto`` is bf16-mixed on GPU and fp32 on CPU.

    ``devices > 1``: DDP in spawned processes (``ddp_spawn``: NCCL on GPUs, gloo on CPU), so that it also runs
    inside a library call (the study runner), not only from a script.
    """
    from lightning_fabric import Fabric

    dev = resolve_device(device)
    accelerator = "cuda" if dev.type == "cuda" else "cpu"
    if precision == "auto":
        precision = "bf16" if accelerator == "cuda" else "32"
    return Fabric(accelerator=accelerator, devices=devices, strategy="auto" if devices == 1 else "ddp_spawn",
                  precision="bf16-mixed" if precision == "bf16" else "32-true")


def sum_over_ranks(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over the processes of a DDP group (the values themselves outside one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()
