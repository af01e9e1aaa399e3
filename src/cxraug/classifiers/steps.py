"""Optimiser steps: budgets and validation-check intervals, seeded batch streams, training phases (incl. the
pretrain-finetune split), optimisers and learning-rate schedules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from cxraug.classifiers.config import AUTO_EPOCHS, MIN_BUDGET_STEPS, MIN_EVAL_STEPS, ClassifierConfig
from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError


def batch_stream(n: int, global_batch: int, seed: int) -> Iterator[np.ndarray]:
    """Endless full batches of indices from seeded reshuffled passes over ``range(n)``."""
    rng = np.random.default_rng(seed)
    buffer = np.zeros(0, dtype=np.int64)
    while True:
        while len(buffer) < global_batch:
            buffer = np.concatenate([buffer, rng.permutation(n)])
        yield buffer[:global_batch]
        buffer = buffer[global_batch:]


def default_budget(cfg: ClassifierConfig, n_images: int, world: int = 1) -> tuple[int, int]:
    """(eval_every, max_steps) of a run on ``n_images`` images per pass (see ``ClassifierConfig.epochs``)."""
    per_pass = math.ceil(n_images / (cfg.batch_size * world))
    if cfg.epochs is None:  # automatic
        every, budget = max(per_pass, MIN_EVAL_STEPS), max(AUTO_EPOCHS * per_pass, MIN_BUDGET_STEPS)
    else:
        every, budget = per_pass, cfg.epochs * per_pass
    return cfg.eval_every or every, cfg.max_steps or budget


def check_steps(budget: int, every: int) -> list[int]:
    """Optimiser steps between consecutive validation checks: ``every`` each, the last one what is left."""
    return [every] * (budget // every) + ([budget % every] if budget % every else [])


def make_optimizer(cfg: ClassifierConfig, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7, weight_decay=cfg.weight_decay)


def make_schedule(cfg: ClassifierConfig, opt: torch.optim.Optimizer,
                  checks: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=checks)
    return None


@dataclass
class TrainData:
    images: torch.Tensor  # uint8 (N, S, S)
    labels: torch.Tensor  # int64 (N,)
    synthetic: torch.Tensor | None = None  # bool (N,), training data only

    @classmethod
    def of(cls, images: ImageSet) -> "TrainData":
        return cls(torch.as_tensor(images.images), torch.as_tensor(images.labels), torch.as_tensor(images.synthetic))


@dataclass
class Phase:
    """One stretch of training: its name (``history.csv``'s ``phase``), step budget, learning rate, data and
    batch stream (``per_pass``: optimiser steps per pass over its data)."""

    name: str
    budget: int
    lr: float
    data: TrainData
    stream: Iterator[np.ndarray]
    per_pass: int


def pretrain_finetune(whole: Phase, train: ImageSet, cfg: ClassifierConfig, world: int) -> list[Phase]:
    """The budget of ``whole`` split in two stages: ``pretrain`` on real + synthetic images, then
    ``finetune-real`` on the real images only (``finetune_fraction`` of the steps, at least one)."""
    real = train.subset(np.flatnonzero(~train.synthetic))
    if not len(real):
        raise CxraugError("pretrain-finetune needs real training images for its second stage")
    second = max(1, min(whole.budget - 1, round(whole.budget * cfg.finetune_fraction)))
    batch = cfg.batch_size * world
    return [Phase("pretrain", whole.budget - second, whole.lr, whole.data, whole.stream, whole.per_pass),
            Phase("finetune-real", second, whole.lr, TrainData.of(real), batch_stream(len(real), batch, cfg.seed + 1),
                  math.ceil(len(real) / batch))]
