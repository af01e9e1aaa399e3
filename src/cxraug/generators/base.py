"""The generator interface every model implements.

Three kinds (see :class:`GeneratorKind`):

* unconditional - one model per class (VAE, DCGAN, WGAN-GP, VAE-GAN); ``fit`` gets one class's images.
* conditional   - one model for all classes, sampled by label (ACGAN, StyleGAN2-ADA, DDPM).
* translation   - source-class images in, target-class images out (Pix2Pix).

A model subclass implements :meth:`Generator.build`, :meth:`Generator.train_step` and
:meth:`Generator._generate`, and declares what a checkpoint saves (:attr:`Generator.checkpointed`). This class
owns sampling, batches and the model's state; its collaborators do the rest:

* :mod:`cxraug.generators.loop` - the step loop of ``fit`` (EMA updates, non-finite-loss stops, grids, ``last`` /
  ``best`` (by KID) / scheduled checkpoints, exact resume);
* :mod:`cxraug.generators.checkpoint` - what a checkpoint holds and how it is put back (``Generator.load``);
* :mod:`cxraug.generators.runlog` - ``losses.csv``, ``metric-kid.jsonl`` and TensorBoard events of a run;
* :mod:`cxraug.generators.ddp` - ``fit(..., devices=N)`` in N processes with averaged gradients.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from cxraug import io
from cxraug.data.imageset import ImageSet, data_fingerprint, to_uint8, to_unit
from cxraug.data.names import match_class
from cxraug.errors import CxraugError
from cxraug.generators import checkpoint, ddp, loop
from cxraug.generators.checkpoint import FORMAT  # noqa: F401  (the checkpoint format, named here since issue 6)
from cxraug.generators.ddp import rank_generator  # noqa: F401  (a DDP process's generator; the DDP tests use it)
from cxraug.generators.loop import FitResult, Losses, Scorer, TrainingDiverged  # noqa: F401  (part of the interface)
from cxraug.generators.runlog import SCORES_FILE, read_scores  # noqa: F401  (what a run logged)
from cxraug.stamp import run_stamp


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
    patience: int | None = Field(None, ge=1, description="stop when the checkpoint KID has not improved for this "
                                 "many scored checkpoints; None = train the whole budget")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    channels_last: bool = Field(False, description="networks in the channels_last memory format (only where "
                                "bench/step_formats.py measured it faster; the same mathematics)")


@dataclass
class Batch:
    x: torch.Tensor  # images in [-1, 1], (B, 1, S, S)
    y: torch.Tensor  # int64 labels (B,)
    source: torch.Tensor | None = None  # translation: source-class images, (B, 1, S, S)


class Generator(ABC):
    """Base class of every generator. Subclasses set ``name``, ``kind`` and ``Config``."""

    name: ClassVar[str]
    kind: ClassVar[GeneratorKind]
    Config: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    #: what a checkpoint saves and restores: the names of the attributes :meth:`build` creates that hold the
    #: model's networks (``nn.Module``) and optimisers (``torch.optim.Optimizer``), networks first; nothing else
    #: is saved but :meth:`extra_state`
    checkpointed: ClassVar[tuple[str, ...]] = ()
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
        self._check_checkpointed()
        if cfg.channels_last:  # parameters change layout in place: the optimisers keep theirs
            for m in self.modules().values():
                m.to(memory_format=torch.channels_last)
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
    def train_step(self, batch: Batch) -> Losses:
        """One optimisation step on ``batch``; return the losses, detached 0-dim tensors on the model's device (or
        floats): the loop reads them back at log, sample and checkpoint steps only, NaN check included."""

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
        """The declared networks (:attr:`checkpointed`), by attribute name."""
        return {k: getattr(self, k) for k in self.checkpointed if isinstance(getattr(self, k), nn.Module)}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The declared optimisers (:attr:`checkpointed`), by attribute name."""
        return {k: getattr(self, k) for k in self.checkpointed
                if isinstance(getattr(self, k), torch.optim.Optimizer)}

    def _check_checkpointed(self) -> None:
        for k in self.checkpointed:
            v = getattr(self, k, None)
            if not isinstance(v, (nn.Module, torch.optim.Optimizer)):
                raise TypeError(f"{type(self).__name__}.checkpointed names {k!r}, which build() did not set to a "
                                f"network or an optimiser (it is {type(v).__name__})")

    # ----------------------------------------------------------------- translation interface
    @property
    def target_class(self) -> str | None:
        """The class a translation model produces from the inputs it picks itself (:meth:`source_images`); None
        for every other model, and for a translation model whose callers pass the inputs."""
        return None

    def source_images(self, train: ImageSet) -> np.ndarray | None:
        """The uint8 images (N, S, S) of a training fold that a translation model translates into
        :attr:`target_class`; None when the model does not pick its inputs (see :attr:`target_class`)."""
        return None

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
            src = to_unit(source[:n]).to(self.device)
            n = len(src)
        elif self.kind is GeneratorKind.TRANSLATION:
            raise CxraugError(f"{self.name} translates images: pass source images to sample()")

        def run(rows: slice, rng: torch.Generator) -> torch.Tensor:
            lab = None if labels is None else labels[rows]
            s = None if src is None else src[rows]
            return self._generate(rows.stop - rows.start, lab, s, rng)

        return self.batched(n, run, seed)

    def batched(self, n: int, run: Callable[[slice, torch.Generator], torch.Tensor], seed: int) -> np.ndarray:
        """``n`` uint8 images made by ``run(rows, rng)`` (images in [-1, 1] for the items ``rows``) in chunks of
        ``batch_size``, networks in eval mode, without gradients, every chunk drawing from one generator seeded
        with ``seed`` (what makes :meth:`sample` and a diffusion model's edits deterministic)."""
        rng = torch.Generator(device=self.device).manual_seed(int(seed))
        for m in self.modules().values():
            m.eval()
        out = []
        with torch.no_grad():
            chunk = max(1, self.config.batch_size)
            for i in range(0, n, chunk):
                out.append(run(slice(i, min(n, i + chunk)), rng).float().cpu())
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
        (:mod:`cxraug.generators.ddp`; the scorer must then be picklable) and loads the final state back into this object.
        ``tensorboard``: event files in ``out_dir/tb`` (:func:`cxraug.tensorboard.summary_writer`). ``stamp``
        (:func:`cxraug.stamp.run_stamp`, made here when None) is stored in every checkpoint.
        """
        if devices < 1:
            raise CxraugError(f"devices must be >= 1, got {devices}")
        if stamp is None:
            stamp = run_stamp(self.device, data_fingerprint(train)[:16])
        if devices > 1:
            return ddp.fit_ddp(self, train, out_dir, scorer, resume, devices, tensorboard, stamp)
        return loop.train(self, train, out_dir, scorer=scorer, resume=resume, progress=progress,
                          tensorboard=tensorboard, stamp=stamp)

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

    # ----------------------------------------------------------------- save / load
    def save(self, path: str | Path) -> None:
        """Weights-only checkpoint with config, classes, preprocessing and full training state."""
        io.torch_save(checkpoint.capture(self), path)

    @staticmethod
    def load(path: str | Path, device: str | torch.device = "cpu", *, resume: bool = False) -> "Generator":
        """Load any cxraug generator checkpoint (a ``.pt`` file or a run directory: best, else last).

        The process-wide torch RNG is left as it was, unless ``resume``: then it is the checkpoint's, as training
        had it at that step (what continuing the training bit for bit needs)."""
        from cxraug.generators import GENERATORS  # function level: the registry imports every model, which imports this module

        state = checkpoint.read(checkpoint.find(path), device)
        cls = GENERATORS.get(state["name"])
        with checkpoint.global_rng_kept(device):  # building the model seeds and draws from the global RNG
            gen = cls(cls.Config(**state["config"]), classes=state["classes"], device=device,
                      preprocess=state.get("preprocess"))
        checkpoint.restore(gen, state, global_rng=resume)
        return gen
