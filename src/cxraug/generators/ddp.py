"""``Generator.fit(..., devices=N)``: one model trained in N processes (Lightning Fabric ``ddp_spawn``).

Every process builds the same model from the caller's state and takes its share ``[rank::N]`` of each global
batch of ``N * batch_size`` images; the gradients of every optimiser are averaged over the processes right before
its step (an optimiser step pre-hook, :func:`average_gradients`), so the weights stay identical; per-step noise
(latents, diffusion timesteps) differs per process; rank 0 alone writes losses (its own), grids and checkpoints and
scores KID. Gradients are averaged in the hook rather than by wrapping modules in ``DistributedDataParallel``
because GAN steps run a network several times per backward pass and back-propagate through the discriminator while
only the generator's optimiser steps, which DDP's reducer does not support; the StyleGAN2-ADA reference code
synchronises its gradients the same way. BatchNorm statistics are per process (as in DDP with
``broadcast_buffers=False``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cxraug import io
from cxraug.data.imageset import ImageSet
from cxraug.device import make_fabric
from cxraug.generators import checkpoint
from cxraug.generators.loop import FitResult, Scorer

if TYPE_CHECKING:
    from cxraug.generators.base import Generator


def fit_ddp(gen: "Generator", train: ImageSet, out_dir: str | Path, scorer: Scorer | None, resume: bool,
            devices: int, tensorboard: bool | None, stamp: dict[str, Any]) -> FitResult:
    """``gen.fit`` in ``devices`` spawned processes; ``gen`` then holds rank 0's final state."""
    fabric = make_fabric(str(gen.device), devices=devices)
    threads = max(1, torch.get_num_threads() // devices)
    with tempfile.TemporaryDirectory(prefix="cxraug-ddp-") as tmp:
        start = os.path.join(tmp, "start.pt")
        io.torch_save(checkpoint.capture(gen), start)  # every process starts from this object's state
        result = fabric.launch(_fit_rank, type(gen), start, threads, train, str(out_dir), scorer, resume,
                               tensorboard, stamp)
    last = io.torch_load(Path(out_dir) / "checkpoints" / "last.pt", map_location=gen.device)
    checkpoint.restore(gen, last, global_rng=True)  # as if this process had trained: training may go on
    return result


def average_gradients(optimizer: torch.optim.Optimizer, *_: Any) -> None:
    """Optimiser step pre-hook of DDP training: replace every gradient by its mean over the processes."""
    import torch.distributed as dist

    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def rank_generator(fabric: Any, cls: "type[Generator]", start: str) -> "Generator":
    """In a DDP process: the generator of checkpoint ``start`` on this process's device, with its rank and the
    gradient-averaging hook on every optimiser."""
    state = io.torch_load(start, map_location=fabric.device)
    gen = cls(cls.Config(**state["config"]), classes=state["classes"], device=fabric.device,
              preprocess=state.get("preprocess"))
    checkpoint.restore(gen, state, global_rng=True)
    gen._rank, gen._world = fabric.global_rank, fabric.world_size
    for opt in gen.optimizers().values():
        opt.register_step_pre_hook(average_gradients)
    return gen


def _fit_rank(fabric: Any, cls: "type[Generator]", start: str, threads: int, train: ImageSet, out_dir: str,
              scorer: Scorer | None, resume: bool, tensorboard: bool | None, stamp: dict[str, Any]) -> FitResult:
    """One DDP process of :meth:`Generator.fit`: the same model and state as the caller's, its data share."""
    torch.set_num_threads(threads)
    gen = rank_generator(fabric, cls, start)
    result = gen.fit(train, out_dir, scorer=scorer, resume=resume, progress=fabric.global_rank == 0,
                     tensorboard=tensorboard, stamp=stamp)
    fabric.barrier()  # rank 0's last checkpoint is written before the caller reads it
    return result
