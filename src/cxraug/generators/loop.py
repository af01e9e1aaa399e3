"""The step loop of :meth:`cxraug.generators.base.Generator.fit` in one process (one DDP rank or the only one).

Each step: networks in train mode (EMA copies in eval mode), ``train_step`` on the model's next batch, the EMA update.
The losses stay on the device (no host sync per step) until a log, sample or checkpoint step reads them all back at
once: a non-finite one stops training there, naming its step, before anything is written. Then, on rank 0 only, the
losses every ``log_every`` steps, a fixed-noise grid
every ``sample_every``, the ``last`` (and best-by-KID) checkpoint every ``checkpoint_every`` and the kept
``step_XXXXXXX.pt`` checkpoints. With ``patience`` the loop stops once the checkpoint KID has not improved for that
many scored checkpoints. With ``resume`` the loop first restores ``checkpoints/last.pt`` exactly,
process-wide RNG included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from cxraug import faults, io
from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError
from cxraug.generators import checkpoint
from cxraug.generators.runlog import RunLog
from cxraug.ui import make_progress

if TYPE_CHECKING:
    from cxraug.generators.base import Generator

#: what ``train_step`` returns: detached 0-dim tensors on the model's device, or plain floats (e.g. ADA's p)
Losses = dict[str, "torch.Tensor | float"]

#: ``scorer(images uint8 (N,S,S), labels int (N,) or None) -> {"kid": ..., ...}``; lower KID is better.
Scorer = Callable[[np.ndarray, "np.ndarray | None"], dict[str, float]]


class TrainingDiverged(CxraugError):
    """A loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class FitResult:
    steps: int
    best_step: int | None
    best_kid: float | None
    wall_s: float
    out_dir: str
    stopped_early: bool = False  # the KID did not improve for ``patience`` checkpoints


class PendingLosses:
    """The losses of the steps since the last read, kept as they came (device tensors: no sync per step)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, Losses]] = []

    def add(self, step: int, losses: Losses) -> None:
        self.rows.append((step, losses))

    def read(self, name: str, ckpt_dir: Path) -> dict[str, float]:
        """The last added step's losses as floats, after one device-to-host copy of every pending value; a non-finite
        value of any pending step raises :class:`TrainingDiverged` naming the first such step."""
        flat = [(step, k, v) for step, losses in self.rows for k, v in losses.items()]
        tensors = [v.detach().reshape(()).double() for _, _, v in flat if isinstance(v, torch.Tensor)]
        host = iter(torch.stack(tensors).cpu().tolist() if tensors else [])
        values = [(step, k, next(host) if isinstance(v, torch.Tensor) else float(v)) for step, k, v in flat]
        last = self.rows[-1][0]
        self.rows = []
        for step, k, v in values:
            if not math.isfinite(v):
                raise TrainingDiverged(f"{name}: non-finite loss {k}={v} at step {step}; training stopped, the last "
                                       f"good checkpoint is kept in {ckpt_dir}")
        return {k: v for step, k, v in values if step == last}


@dataclass(frozen=True)
class Due:
    """What the loop writes after the current step (the last step writes all but a kept checkpoint)."""

    log: bool
    grid: bool
    checkpoint: bool
    keep: bool

    @classmethod
    def at(cls, gen: "Generator", total: int) -> "Due":
        c, s = gen.config, gen.step
        last = s == total
        return cls(log=last or s % c.log_every == 0, grid=last or s % c.sample_every == 0,
                   checkpoint=last or s % c.checkpoint_every == 0, keep=s in c.keep_steps)

    def any(self) -> bool:
        """Does this step write anything? (Only then are its losses read back to the host.)"""
        return self.log or self.grid or self.checkpoint or self.keep


def out_of_patience(gen: "Generator") -> bool:
    """Has the best checkpoint KID stayed unbeaten for ``patience`` scored checkpoints? (From the step and the
    best step alone, so a resumed run stops where the first one did.)"""
    p, best = gen.config.patience, gen.best["step"]
    return p is not None and best is not None and (gen.step - best) // gen.config.checkpoint_every >= p


def train(gen: "Generator", data: ImageSet, out_dir: str | Path, *, scorer: Scorer | None, resume: bool,
          progress: bool, tensorboard: bool | None, stamp: dict[str, Any]) -> FitResult:
    """Train ``gen`` on ``data`` up to its step budget in this process, writing into ``out_dir`` (rank 0)."""
    if len(data) == 0:
        raise CxraugError(f"{gen.name}: the training set is empty")
    if data.size != gen.config.size:
        raise CxraugError(f"{gen.name}: images are {data.size} px but the generator is configured for "
                          f"{gen.config.size} px")
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    (out / "samples").mkdir(parents=True, exist_ok=True)
    last = ckpt_dir / "last.pt"
    if resume and last.exists():
        checkpoint.restore(gen, io.torch_load(last, map_location=gen.device), global_rng=True)
    gen.stamp = stamp
    if gen._rank > 0:  # DDP: its own noise (rank 0 keeps the exact single-process stream)
        torch.manual_seed(gen.config.seed + 1_000_003 * gen._rank + gen.step)
    writer = gen._rank == 0
    total = gen.total_steps(len(data))
    log = RunLog(out, gen.step, tensorboard) if writer else None
    t0 = time.time()
    pending = PendingLosses()
    with make_progress(enabled=progress and writer) as prog:
        task = prog.add_task(f"train {gen.name}", total=total, completed=gen.step)
        while gen.step < total and not out_of_patience(gen):
            for m in gen.modules().values():
                m.train()
            for m in gen.ema.values():
                m.eval()
            losses = gen.train_step(gen.next_batch(data))
            gen.step += 1
            pending.add(gen.step, losses)
            faults.point("generator")
            update_ema(gen)
            prog.advance(task)
            due = Due.at(gen, total)
            if not due.any():
                continue
            logged = pending.read(gen.name, ckpt_dir)  # every rank: a diverged run stops before writing anything
            if log is None:
                continue
            if due.log:
                log.losses(gen.step, logged)
            if due.grid:
                grid = out / "samples" / f"step_{gen.step:07d}.png"
                gen.save_grid(grid)
                log.grid(gen.step, grid)
            if due.checkpoint:
                save_checkpoints(gen, ckpt_dir, data, scorer, log)
            if due.keep:
                io.torch_save(checkpoint.capture(gen), ckpt_dir / f"step_{gen.step:07d}.pt")
    if log is not None:
        if not last.exists():  # zero-step budget: still leave a loadable checkpoint
            save_checkpoints(gen, ckpt_dir, data, scorer, log)
        log.close()
    return FitResult(steps=gen.step, best_step=gen.best["step"], best_kid=gen.best["kid"],
                     wall_s=time.time() - t0, out_dir=str(out), stopped_early=gen.step < total)


def save_checkpoints(gen: "Generator", ckpt_dir: Path, data: ImageSet, scorer: Scorer | None,
                     log: RunLog) -> None:
    """``last.pt``, and ``best.pt`` when the scorer rates this step's samples best so far (lowest KID)."""
    if scorer is not None:
        with torch.random.fork_rng(devices=[gen.device] if gen.device.type == "cuda" else []):
            imgs, labels = gen.eval_samples(gen.config.kid_samples, data)
            scores = scorer(imgs, labels)  # a scorer drawing from the global RNG must not change training
        kid = float(scores["kid"])
        log.scores(gen.step, scores)
        if gen.best["kid"] is None or kid < gen.best["kid"]:
            gen.best = {"step": gen.step, "kid": kid}
            io.torch_save(checkpoint.capture(gen), ckpt_dir / "best.pt")
    io.torch_save(checkpoint.capture(gen), ckpt_dir / "last.pt")


def update_ema(gen: "Generator") -> None:
    """Move every EMA copy ``1 - ema_decay`` of the way towards its trained network (buffers copied)."""
    d = gen.config.ema_decay
    if d is None:
        return
    with torch.no_grad():
        for attr, ema in gen.ema.items():
            src = getattr(gen, attr)
            for pe, p in zip(ema.parameters(), src.parameters()):
                pe.lerp_(p, 1.0 - d)
            for be, b in zip(ema.buffers(), src.buffers()):
                be.copy_(b)
