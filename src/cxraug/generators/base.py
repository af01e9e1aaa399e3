"""The generator interface every model implements, and the training loop they share.

Three kinds (see :class:`GeneratorKind`):

* unconditional - one model per class (VAE, DCGAN, WGAN-GP, VAE-GAN); ``fit`` gets one class's images.
* conditional   - one model for all classes, sampled by label (ACGAN, StyleGAN2-ADA, DDPM).
* translation   - source-class images in, target-class images out (Pix2Pix).

A model subclass implements :meth:`Generator.build`, :meth:`Generator.train_step` and
:meth:`Generator._generate`; this class owns the rest: the step loop, CSV loss log, fixed-noise sample grids,
``last``/``best`` (by KID) and scheduled checkpoints, EMA, non-finite-loss stops and exact resume, the
append-only logs (``losses.csv``, ``metric-kid.jsonl``), TensorBoard events and the run stamp in checkpoints.

``fit(..., devices=N)`` trains one model in N processes (Lightning Fabric ``ddp_spawn``: NCCL on GPUs, gloo on
CPU). Every process builds the same model from the same seed and takes its share ``[rank::N]`` of each global
batch of ``N * batch_size`` images; the gradients of every optimiser are averaged over the processes right
before its step (an optimiser step pre-hook), so the weights stay identical; per-step noise (latents, diffusion
timesteps) differs per process; rank 0 alone writes losses (its own), grids and checkpoints and scores KID.
Gradients are averaged in the hook rather than by wrapping modules in ``DistributedDataParallel`` because GAN
steps run a network several times per backward pass and back-propagate through the discriminator while only the
generator's optimiser steps, which DDP's reducer does not support; the StyleGAN2-ADA reference code synchronises
its gradients the same way. BatchNorm statistics are per process (as in DDP with ``broadcast_buffers=False``).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from cxraug import faults, io
from cxraug.data.imageset import ImageSet, to_uint8
from cxraug.errors import CxraugError

FORMAT = "cxraug-generator/1"
#: one JSON line per scored checkpoint, beside ``losses.csv``
SCORES_FILE = "metric-kid.jsonl"

#: ``scorer(images uint8 (N,S,S), labels int (N,) or None) -> {"kid": ..., ...}``; lower KID is better.
Scorer = Callable[[np.ndarray, "np.ndarray | None"], dict[str, float]]


class GeneratorKind(str, Enum):
    UNCONDITIONAL = "unconditional"
    CONDITIONAL = "conditional"
    TRANSLATION = "translation"


class GeneratorConfig(BaseModel):
    """Options shared by every generator; models subclass this and add their own fields."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(64, ge=16, le=512, description="image size S (S x S, one channel)")
    batch_size: int = Field(64, ge=1)
    steps: int = Field(2000, ge=0, description="optimiser steps (one generator update = one step)")
    epochs: float | None = Field(None, gt=0, description="if set, overrides steps: epochs * N / batch_size")
    lr: float = Field(2e-4, gt=0)
    ema_decay: float | None = Field(None, ge=0, lt=1, description="EMA of generator weights; None = off")
    log_every: int = Field(10, ge=1)
    sample_every: int = Field(500, ge=1, description="fixed-noise sample grid PNG every K steps")
    checkpoint_every: int = Field(500, ge=1, description="last (and best-by-KID) checkpoint every K steps")
    keep_steps: list[int] = Field(default_factory=list, description="also keep checkpoints at these steps")
    kid_samples: int = Field(200, ge=10, description="samples scored by KID at each checkpoint")
    seed: int = Field(0, ge=0, le=2**32 - 1)


class TrainingDiverged(CxraugError):
    """A loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class Batch:
    x: torch.Tensor  # images in [-1, 1], (B, 1, S, S)
    y: torch.Tensor  # int64 labels (B,)
    source: torch.Tensor | None = None  # translation: source-class images, (B, 1, S, S)


@dataclass
class FitResult:
    steps: int
    best_step: int | None
    best_kid: float | None
    wall_s: float
    out_dir: str


class Generator(ABC):
    """Base class of every generator. Subclasses set ``name``, ``kind`` and ``Config``."""

    name: ClassVar[str]
    kind: ClassVar[GeneratorKind]
    Config: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    #: names of attributes holding generator networks that get an EMA copy when ``ema_decay`` is set
    ema_targets: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: GeneratorConfig | dict | None = None, classes: list[str] | None = None,
                 device: str | torch.device = "cpu", preprocess: dict | None = None) -> None:
        cfg = config if isinstance(config, GeneratorConfig) else self.Config(**(config or {}))
        self.config = cfg
        self.classes = list(classes or ["target"])
        self.device = torch.device(device)
        self.preprocess = dict(preprocess or {})
        self.step = 0
        self.best: dict[str, Any] = {"step": None, "kid": None}
        self.stamp: dict[str, Any] | None = None  # provenance of the training run (cxraug.stamp), set by fit
        torch.manual_seed(cfg.seed)
        self.build()
        self.ema: dict[str, nn.Module] = {}
        if cfg.ema_decay is not None:
            for attr in self.ema_targets:
                self.ema[attr] = copy.deepcopy(getattr(self, attr)).eval().requires_grad_(False)
        self._data_rng = torch.Generator().manual_seed(cfg.seed)
        self._perm: torch.Tensor | None = None
        self._perm_pos = 0
        self._rank, self._world = 0, 1  # set by a DDP process (fit(devices=N))

    # ----------------------------------------------------------------- model-specific
    @abstractmethod
    def build(self) -> None:
        """Create networks and optimisers as attributes (nn.Module / torch.optim.Optimizer), on ``self.device``."""

    @abstractmethod
    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step on ``batch``; return the losses as floats (they are logged and NaN-checked)."""

    @abstractmethod
    def _generate(self, n: int, labels: torch.Tensor | None, source: torch.Tensor | None,
                  rng: torch.Generator) -> torch.Tensor:
        """Images in [-1, 1], (n, 1, S, S). Draw all randomness from ``rng``. Called under ``no_grad``."""

    def extra_state(self) -> dict[str, Any]:
        """Model state outside modules/optimisers that resume must restore (e.g. ADA's p)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""

    # ----------------------------------------------------------------- helpers for subclasses
    def net(self, attr: str) -> nn.Module:
        """The network to sample with: its EMA copy when EMA is on, else the trained one."""
        return self.ema.get(attr, getattr(self, attr))

    def modules(self) -> dict[str, nn.Module]:
        return {k: v for k, v in vars(self).items() if isinstance(v, nn.Module)}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)}

    # ----------------------------------------------------------------- sampling
    def sample(self, n: int, label: int | str | list | np.ndarray | None = None,
               source: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
        """``n`` uint8 one-channel images (n, S, S); deterministic for a given ``seed``.

        ``label``: a class name/index (or one per image) for conditional models.
        ``source``: uint8 source images (n, S, S) for translation models.
        """
        labels = self._labels(n, label)
        src = None
        if source is not None:
            from cxraug.data.imageset import to_unit

            src = to_unit(source[:n]).to(self.device)
            n = len(src)
        elif self.kind is GeneratorKind.TRANSLATION:
            raise CxraugError(f"{self.name} translates images: pass source images to sample()")
        rng = torch.Generator(device=self.device).manual_seed(int(seed))
        for m in self.modules().values():
            m.eval()
        out = []
        with torch.no_grad():
            chunk = max(1, self.config.batch_size)
            for i in range(0, n, chunk):
                k = min(chunk, n - i)
                lab = None if labels is None else labels[i:i + k]
                s = None if src is None else src[i:i + k]
                out.append(self._generate(k, lab, s, rng).float().cpu())
        return to_uint8(torch.cat(out)) if out else np.zeros((0, self.config.size, self.config.size), np.uint8)

    def _labels(self, n: int, label: Any) -> torch.Tensor | None:
        if self.kind is not GeneratorKind.CONDITIONAL:
            return None
        if label is None:
            lab = np.arange(n) % len(self.classes)
        elif isinstance(label, (str, int, np.integer)):
            lab = np.full(n, self._label_index(label))
        else:
            lab = np.array([self._label_index(v) for v in label])
        return torch.as_tensor(lab, dtype=torch.long, device=self.device)

    def _label_index(self, label: int | str) -> int:
        if isinstance(label, str):
            from cxraug.data.names import match_class

            return match_class(label, self.classes)
        if not 0 <= int(label) < len(self.classes):
            raise CxraugError(f"label {label} out of range for classes {self.classes}")
        return int(label)

    # ----------------------------------------------------------------- training loop
    def total_steps(self, n_train: int) -> int:
        c = self.config
        if c.epochs is not None:  # a step consumes one global batch: every DDP process's share of it
            return max(1, math.ceil(c.epochs * n_train / (c.batch_size * self._world)))
        return c.steps

    def training_set(self, train: ImageSet, label: str | None = None) -> ImageSet:
        """The images :meth:`fit` should get from a training fold: class ``label``'s for unconditional models,
        the whole fold otherwise. Models that also learn from other classes (VAE pre-training) override this."""
        if self.kind is GeneratorKind.UNCONDITIONAL and label is not None:
            from cxraug.data.names import match_class

            return train.of_class(train.classes[match_class(label, train.classes)])
        return train

    def next_indices(self, n: int) -> np.ndarray:
        """Indices into ``n`` training items of the next *global* batch (``processes * batch_size``): an epoch-wise
        permutation from the seeded data RNG, identical in every DDP process. Take this process's share with
        :meth:`shard`."""
        b = min(self.config.batch_size * self._world, n)
        if self._perm is None or self._perm_pos + b > n:
            self._perm = torch.randperm(n, generator=self._data_rng)
            self._perm_pos = 0
        idx = self._perm[self._perm_pos:self._perm_pos + b].numpy()
        self._perm_pos += b
        return idx

    def shard(self, items: np.ndarray) -> np.ndarray:
        """This process's share ``[rank::processes]`` of a global batch (everything in a single process)."""
        return items[self._rank::self._world]

    def next_batch(self, train: ImageSet) -> Batch:
        """Sample a batch by epoch-wise permutation (seeded, resumable). Translation models override."""
        idx = self.shard(self.next_indices(len(train)))
        x = torch.as_tensor(train.images[idx]).to(self.device).unsqueeze(1).float().div_(127.5).sub_(1.0)
        y = torch.as_tensor(train.labels[idx], device=self.device)
        return Batch(x=x, y=y)

    def eval_samples(self, n: int, train: ImageSet) -> tuple[np.ndarray, np.ndarray | None]:
        """Samples scored at checkpoints (balanced labels for conditional models)."""
        if self.kind is GeneratorKind.CONDITIONAL:
            labels = np.arange(n) % len(self.classes)
            return self.sample(n, label=labels, seed=10_000), labels
        return self.sample(n, seed=10_000), None

    def fit(self, train: ImageSet, out_dir: str | Path, *, scorer: Scorer | None = None,
            resume: bool = True, progress: bool = True, devices: int = 1, tensorboard: bool | None = None,
            stamp: dict[str, Any] | None = None) -> FitResult:
        """Train on ``train`` (training fold only) for the configured budget, writing into ``out_dir``.

        ``scorer`` rates samples against a fixed set of real *training or validation* images (never test);
        the checkpoint with the lowest KID is kept as ``best.pt``. With ``resume`` the run continues from
        ``out_dir/checkpoints/last.pt`` exactly where it stopped. ``devices=N > 1`` trains in N DDP processes
        (module docstring; the scorer must then be picklable) and loads the final state back into this object.
        ``tensorboard``: event files in ``out_dir/tb`` (:func:`cxraug.tensorboard.summary_writer`). ``stamp``
        (:func:`cxraug.stamp.run_stamp`, made here when None) is stored in every checkpoint.
        """
        if devices < 1:
            raise CxraugError(f"devices must be >= 1, got {devices}")
        if stamp is None:
            from cxraug.data.imageset import data_fingerprint
            from cxraug.stamp import run_stamp

            stamp = run_stamp(self.device, data_fingerprint(train)[:16])
        if devices > 1:
            return self._fit_ddp(train, out_dir, scorer, resume, devices, tensorboard, stamp)
        if len(train) == 0:
            raise CxraugError(f"{self.name}: the training set is empty")
        if train.size != self.config.size:
            raise CxraugError(f"{self.name}: images are {train.size} px but the generator is configured for "
                              f"{self.config.size} px")
        out = Path(out_dir)
        ckpt_dir = out / "checkpoints"
        (out / "samples").mkdir(parents=True, exist_ok=True)
        last = ckpt_dir / "last.pt"
        if resume and last.exists():
            self._load_full(io.torch_load(last, map_location=self.device))
        self.stamp = stamp
        if self._rank > 0:  # DDP: its own noise (rank 0 keeps the exact single-process stream)
            torch.manual_seed(self.config.seed + 1_000_003 * self._rank + self.step)
        writer = self._rank == 0
        total = self.total_steps(len(train))
        log = _RunLog(out, self.step, tensorboard) if writer else None
        t0 = time.time()
        from cxraug.ui import make_progress

        with make_progress(enabled=progress and writer) as prog:
            task = prog.add_task(f"train {self.name}", total=total, completed=self.step)
            while self.step < total:
                for m in self.modules().values():
                    m.train()
                for m in self.ema.values():
                    m.eval()
                losses = self.train_step(self.next_batch(train))
                bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
                if bad:
                    name, val = next(iter(bad.items()))
                    raise TrainingDiverged(
                        f"{self.name}: non-finite loss {name}={val} at step {self.step + 1}; training stopped, "
                        f"the last good checkpoint is kept in {ckpt_dir}")
                self.step += 1
                faults.point("generator")
                self._update_ema()
                prog.advance(task)
                if log is None:
                    continue
                if self.step % self.config.log_every == 0 or self.step == total:
                    log.losses(self.step, losses)
                if self.step % self.config.sample_every == 0 or self.step == total:
                    grid = out / "samples" / f"step_{self.step:07d}.png"
                    self.save_grid(grid)
                    log.grid(self.step, grid)
                if self.step % self.config.checkpoint_every == 0 or self.step == total:
                    self._checkpoint(ckpt_dir, train, scorer, log)
                if self.step in self.config.keep_steps:
                    io.torch_save(self._full_state(), ckpt_dir / f"step_{self.step:07d}.pt")
        if log is not None:
            if not last.exists():  # zero-step budget: still leave a loadable checkpoint
                self._checkpoint(ckpt_dir, train, scorer, log)
            log.close()
        return FitResult(steps=self.step, best_step=self.best["step"], best_kid=self.best["kid"],
                         wall_s=time.time() - t0, out_dir=str(out))

    def _fit_ddp(self, train: ImageSet, out_dir: str | Path, scorer: Scorer | None, resume: bool,
                 devices: int, tensorboard: bool | None, stamp: dict[str, Any]) -> FitResult:
        """``fit`` in ``devices`` spawned processes; this object then holds rank 0's final state."""
        from cxraug.device import make_fabric

        fabric = make_fabric(str(self.device), devices=devices)
        threads = max(1, torch.get_num_threads() // devices)
        with tempfile.TemporaryDirectory(prefix="cxraug-ddp-") as tmp:
            start = os.path.join(tmp, "start.pt")
            io.torch_save(self._full_state(), start)  # every process starts from this object's state
            result = fabric.launch(_fit_rank, type(self), start, threads, train, str(out_dir), scorer, resume,
                                   tensorboard, stamp)
        self._load_full(io.torch_load(Path(out_dir) / "checkpoints" / "last.pt", map_location=self.device))
        return result

    def _checkpoint(self, ckpt_dir: Path, train: ImageSet, scorer: Scorer | None, log: "_RunLog") -> None:
        if scorer is not None:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                imgs, labels = self.eval_samples(self.config.kid_samples, train)
                scores = scorer(imgs, labels)  # a scorer drawing from the global RNG must not change training
            kid = float(scores["kid"])
            log.scores(self.step, scores)
            if self.best["kid"] is None or kid < self.best["kid"]:
                self.best = {"step": self.step, "kid": kid}
                io.torch_save(self._full_state(), ckpt_dir / "best.pt")
        io.torch_save(self._full_state(), ckpt_dir / "last.pt")

    def save_grid(self, path: Path, n: int = 16) -> None:
        """Fixed-noise sample grid (same seed every time, so grids are comparable across steps)."""
        from torchvision.utils import save_image

        if self.kind is GeneratorKind.TRANSLATION:
            return  # translation models write their own grids (source | output) in train_step callers
        per = max(1, n // max(1, len(self.classes))) if self.kind is GeneratorKind.CONDITIONAL else n
        labels = np.repeat(np.arange(len(self.classes)), per) if self.kind is GeneratorKind.CONDITIONAL else None
        imgs = self.sample(len(labels) if labels is not None else n, label=labels, seed=1234)
        t = torch.as_tensor(imgs).unsqueeze(1).float() / 255.0
        path.parent.mkdir(parents=True, exist_ok=True)
        with io.atomic_path(path) as tmp:
            save_image(t, tmp, nrow=per if labels is not None else int(math.sqrt(n)), format="png")

    def _update_ema(self) -> None:
        d = self.config.ema_decay
        if d is None:
            return
        with torch.no_grad():
            for attr, ema in self.ema.items():
                src = getattr(self, attr)
                for pe, p in zip(ema.parameters(), src.parameters()):
                    pe.lerp_(p, 1.0 - d)
                for be, b in zip(ema.buffers(), src.buffers()):
                    be.copy_(b)

    # ----------------------------------------------------------------- save / load / resume
    def _full_state(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "config": self.config.model_dump(),
            "classes": list(self.classes),
            "preprocess": self.preprocess,
            "step": self.step,
            "best": dict(self.best),
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "ema": {k: m.state_dict() for k, m in self.ema.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "rng": {"torch": torch.get_rng_state(), "data": self._data_rng.get_state(),
                    "perm": self._perm if self._perm is not None else torch.empty(0, dtype=torch.long),
                    "perm_pos": self._perm_pos,
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []},
            "extra": self.extra_state(),
            "stamp": self.stamp,
        }

    def _load_full(self, state: dict[str, Any], weights_only: bool = False) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        for k, m in self.ema.items():
            if k in state.get("ema", {}):
                m.load_state_dict(state["ema"][k])
        self.load_extra_state(state.get("extra", {}))
        if weights_only:
            return
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        self.step = int(state["step"])
        self.best = dict(state.get("best", {"step": None, "kid": None}))
        self.stamp = state.get("stamp")
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self._data_rng.set_state(rng["data"])
        self._perm = rng["perm"] if len(rng["perm"]) else None
        self._perm_pos = int(rng["perm_pos"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])

    def save(self, path: str | Path) -> None:
        """Weights-only checkpoint with config, classes, preprocessing and full training state."""
        io.torch_save(self._full_state(), path)

    @staticmethod
    def load(path: str | Path, device: str | torch.device = "cpu") -> "Generator":
        """Load any cxraug generator checkpoint (a ``.pt`` file or a run directory: best, else last)."""
        from cxraug.generators import GENERATORS

        p = Path(path)
        if p.is_dir():
            cands = [p / "checkpoints" / "best.pt", p / "checkpoints" / "last.pt", p / "best.pt", p / "last.pt"]
            found = next((c for c in cands if c.exists()), None)
            if found is None:
                raise CxraugError(f"no generator checkpoint (best.pt or last.pt) under {p}")
            p = found
        state = io.torch_load(p, map_location=device)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CxraugError(f"{p} is not a cxraug generator checkpoint")
        cls = GENERATORS.get(state["name"])
        gen = cls(cls.Config(**state["config"]), classes=state["classes"], device=device,
                  preprocess=state.get("preprocess"))
        gen._load_full(state)
        return gen


def _average_gradients(optimizer: torch.optim.Optimizer, *_: Any) -> None:
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


def rank_generator(fabric: Any, cls: type[Generator], start: str) -> Generator:
    """In a DDP process: the generator of checkpoint ``start`` on this process's device, with its rank and the
    gradient-averaging hook on every optimiser."""
    state = io.torch_load(start, map_location=fabric.device)
    gen = cls(cls.Config(**state["config"]), classes=state["classes"], device=fabric.device,
              preprocess=state.get("preprocess"))
    gen._load_full(state)
    gen._rank, gen._world = fabric.global_rank, fabric.world_size
    for opt in gen.optimizers().values():
        opt.register_step_pre_hook(_average_gradients)
    return gen


def _fit_rank(fabric: Any, cls: type[Generator], start: str, threads: int, train: ImageSet, out_dir: str,
              scorer: Scorer | None, resume: bool, tensorboard: bool | None, stamp: dict[str, Any]) -> FitResult:
    """One DDP process of :meth:`Generator.fit`: the same model and state as the caller's, its data share."""
    torch.set_num_threads(threads)
    gen = rank_generator(fabric, cls, start)
    result = gen.fit(train, out_dir, scorer=scorer, resume=resume, progress=fabric.global_rank == 0,
                     tensorboard=tensorboard, stamp=stamp)
    fabric.barrier()  # rank 0's last checkpoint is written before the caller reads it
    return result


class _RunLog:
    """What rank 0 logs while training: the losses of every logged step (``losses.csv``), one JSON line per
    checkpoint score (``metric-kid.jsonl``, as stylegan2-ada's ``metric-*.jsonl``) and TensorBoard events (losses,
    scores, sample grids) when enabled. Both files are append-only: each line is written once (a loss key first
    seen later, such as a lazily computed regulariser, widens the CSV header once). A resumed run first drops the
    lines past the step it resumes from."""

    def __init__(self, out: Path, resume_step: int, tensorboard: bool | None) -> None:
        self.csv_path, self.jsonl_path = out / "losses.csv", out / SCORES_FILE
        self.fields: list[str] = []
        if self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                reader = csv.DictReader(f)
                rows = [r for r in reader if int(r["step"]) <= resume_step]
                self.fields = list(reader.fieldnames or [])
            self._rewrite(rows)
        if self.jsonl_path.exists():
            lines = [ln for ln in self.jsonl_path.read_text().splitlines() if ln.strip()]
            io.write_text(self.jsonl_path, "".join(ln + "\n" for ln in lines if json.loads(ln)["step"] <= resume_step))
        from cxraug.tensorboard import summary_writer

        self.tb = summary_writer(out / "tb", tensorboard)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        io.write_csv(self.csv_path, rows, self.fields)

    def losses(self, step: int, losses: dict[str, float]) -> None:
        row = {"step": step, **{k: f"{v:.6g}" for k, v in losses.items()}}
        if not self.fields or set(row) - set(self.fields):  # the first row, or a new loss key: widen the header
            rows = []
            if self.csv_path.exists():
                with open(self.csv_path, newline="") as f:
                    rows = list(csv.DictReader(f))
            self.fields = self.fields + [k for k in row if k not in self.fields]
            self._rewrite(rows)
        with open(self.csv_path, "a", newline="") as f:
            f.write(io.csv_text([row], self.fields, header=False))
        if self.tb is not None:
            for k, v in losses.items():
                self.tb.add_scalar(f"loss/{k}", v, step)

    def scores(self, step: int, scores: dict[str, float]) -> None:
        line = {"step": step, "metric": "kid", "results": scores, "timestamp": time.time()}
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(line) + "\n")
        if self.tb is not None:
            for k, v in scores.items():
                self.tb.add_scalar(f"checkpoint/{k}", v, step)

    def grid(self, step: int, path: Path) -> None:
        if self.tb is not None and path.is_file():
            from PIL import Image

            self.tb.add_image("samples", np.asarray(Image.open(path).convert("L")), step, dataformats="HW")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_scores(run_dir: str | Path) -> list[dict[str, Any]]:
    """The checkpoint scores a run logged (``metric-kid.jsonl``): ``{"step", "metric", "results", ...}`` each."""
    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
