"""Classifier training with Lightning Fabric: one clean function per run, used by the CLI and the study runner.

``train_classifier(train, val, cfg, out_dir=None, device="auto") -> TrainedClassifier``

* Device and precision through Fabric: ``device`` ``auto`` | ``cpu`` | ``cuda``; bf16-mixed on GPU, fp32 on CPU
  (``cfg.precision``). Deterministic on CPU for a seed: same seed twice gives identical weights and metrics.
* Batches stream from the training images (uint8 in memory) in seeded, reshuffled passes; every batch is full
  (it may straddle two passes). One pass = ceil(N / batch_size) optimiser steps.
* Budgets are counted in optimiser steps: the training phase makes at most ``max_steps`` steps (default
  ``epochs`` passes over the training images) and checks the validation set every ``eval_every`` steps
  (default one pass). ``patience`` counts checks, so it is ``patience x eval_every`` steps: a study sets
  ``eval_every`` and ``max_steps`` from the *real* training subset, so an arm with 4x more (synthetic) images
  gets no more steps and no more patience than the arm without them.
* Classical augmentation (``cfg.augment``) runs on the fly per batch on the device, parameters drawn per image.
* Loss: cross-entropy, weighted by ``n / (K * n_c)`` from the training counts (``class_weights``, on by
  default); the validation loss uses the same weights. Each check records validation loss, accuracy and
  macro-F1; ``monitor`` (default ``val_f1``: macro-F1, ties broken by the lower loss; or ``val_loss``) picks the
  best check and drives early stopping: after ``patience`` checks without a better score training stops; with
  ``early_stopping=False`` the whole budget is trained. Either way the weights of the best check are restored.
  :attr:`TrainedClassifier.converged` is False when the best check is closer to the end of the budget than the
  patience window (the score was still improving: undertrained).
* Defaults (Adam 1e-3, batch 32, balanced class weights, validation macro-F1 checked every pass but at most every
  10 steps, patience 6 checks, 40 passes but at least 400 steps) were chosen on the dev X-rays on validation data
  only (BENCHMARKS.md, "Classifier defaults").
* A non-finite training or validation loss at a check stops the run: the best check before it is restored (if
  there is one), :attr:`TrainedClassifier.failure` says what happened, and no checkpoint is written without one.
* Transfer learning (``pretrained="imagenet"`` or ``weights=PATH``): frozen backbone, only the head trains; with
  ``unfreeze_last_epochs=N`` a second phase restores the best weights, unfreezes the backbone's last block and
  trains N more epochs at ``unfreeze_lr`` (York Pix2Pix study: 10 epochs at 1e-5).
* Optimisers: Adam, AdamW, SGD (momentum), RMSprop (Keras defaults rho 0.9, eps 1e-7); schedules per validation
  check: ``step`` (every ``step_size`` checks x ``gamma``), ``exponential`` (x ``gamma``), ``cosine`` (to 0 over
  the phase's checks).
* ``devices=N``: one model trained with DDP over N processes (Fabric ``ddp_spawn``; NCCL on GPUs, gloo on CPU);
  each rank takes its slice of every global batch of ``N * batch_size`` images, rank 0 writes the checkpoint.
  BatchNorm statistics are per rank (as in plain DDP).
* ``out_dir`` gets ``best.pt`` (weights-only checkpoint with config, classes and preprocessing) and
  ``history.csv`` (one row per validation check: ``check``, ``phase``, ``steps`` so far, ``epoch`` = passes over
  the training images so far, learning rate, train/validation loss and accuracy, seconds).
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from lightning_fabric import Fabric
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from cxraug import faults
from cxraug.augment import POLICIES
from cxraug.classifiers.base import CLASSIFIERS, Classifier, build_classifier
from cxraug.classifiers.heads import HEADS
from cxraug.data.imageset import ImageSet, to_unit
from cxraug.device import make_fabric, resolve_device, seed_everything
from cxraug.errors import CxraugError
from cxraug.io import torch_load, torch_save, write_csv
from cxraug.ui import make_progress

CHECKPOINT_FORMAT = "cxraug-classifier/1"
#: the automatic budget (``epochs=None``): passes, and the least optimiser steps in a budget and between validation
#: checks. On 150 images a pass is 5 steps, and a from-scratch network's validation loss swings for its first tens
#: of steps, so a budget counted in passes alone stops small-data runs before they converge (BENCHMARKS.md,
#: "Classifier defaults").
AUTO_EPOCHS = 40
MIN_BUDGET_STEPS = 400
MIN_EVAL_STEPS = 10


class ClassifierConfig(BaseModel):
    """Everything that determines a classifier run (extra fields are refused)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "resnet18"
    head: str | None = Field(None, description="head preset; None = the model's default")
    size: int | None = Field(None, description="input size; None = the images' size (must match when given)")
    pretrained: Literal["imagenet"] | None = None
    weights: str | None = Field(None, description="local torchvision-format ImageNet weights (implies imagenet)")
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, description="SGD momentum")
    schedule: Literal["none", "step", "exponential", "cosine"] = "none"
    step_size: int = Field(2, ge=1, description="validation checks between step decays")
    gamma: float = Field(0.9, gt=0, le=1, description="decay factor of step/exponential schedules")
    epochs: int | None = Field(None, ge=1, description="budget in passes over the training images (when max_steps "
                               "is None); None = automatic: AUTO_EPOCHS passes, at least MIN_BUDGET_STEPS steps, "
                               "with a validation check every pass but at most every MIN_EVAL_STEPS steps")
    batch_size: int = Field(32, ge=1, le=65536, description="per process")
    eval_every: int | None = Field(None, ge=1, description="optimiser steps between validation checks; None = "
                                   "one pass over the training images")
    patience: int = Field(6, ge=1, description="validation checks without a better monitored score after which "
                          "training stops (patience x eval_every optimiser steps); also the window by which a run "
                          "that used its whole budget is judged converged")
    monitor: Literal["val_f1", "val_loss"] = Field(
        "val_f1", description="what picks the best check and drives early stopping: validation macro-F1 (ties: "
        "lower loss) or validation loss; on small training sets the loss favours the near-uniform predictions of "
        "the first steps (BENCHMARKS.md, \"Classifier defaults\")")
    early_stopping: bool = Field(True, description="stop after `patience` checks without improvement; False = "
                                 "train the whole budget (the best check is restored either way)")
    class_weights: bool | list[float] = Field(
        True, description="True: balanced weights from this training set's counts; False: unweighted; a list: "
        "fixed per-class weights (a study passes the real training subset's, so every arm uses the same loss "
        "weighting)")
    augment: str | None = Field(None, description="classical policy applied on the fly")
    augment_magnitude: float = Field(1.0, ge=0, le=1)
    max_steps: int | None = Field(None, ge=1, description="optimiser-step budget of the training phase; None = "
                                  "epochs x one pass")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    unfreeze_last_epochs: int = Field(0, ge=0)
    unfreeze_lr: float = Field(1e-5, gt=0)
    precision: Literal["auto", "32", "bf16"] = "auto"
    synthetic_weight: float = Field(1.0, ge=0, le=1, description="per-sample loss weight of synthetic images")
    synthetic_label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of synthetic images only")
    synthetic_schedule: Literal["mixed", "pretrain-finetune"] = Field(
        "mixed", description="pretrain-finetune: the budget is split; stage 1 trains on real + synthetic images, "
        "stage 2 continues from stage 1's best weights on the real images only")
    finetune_fraction: float = Field(0.5, gt=0, lt=1, description="pretrain-finetune: stage 2's share of the budget")

    @field_validator("patience", mode="before")
    @classmethod
    def _patience_given(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("null no longer turns early stopping off; set early_stopping: false "
                             "(patience then only judges convergence)")
        return v

    @field_validator("model", "head", "augment")
    @classmethod
    def _registered(cls, v: str | None, info: ValidationInfo) -> str | None:
        registry = {"model": CLASSIFIERS, "head": HEADS, "augment": POLICIES}[info.field_name]
        if v is not None and v not in registry:
            raise ValueError(f"unknown {registry.kind} {v!r}; known: {', '.join(registry.names())}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ClassifierConfig":
        if self.unfreeze_last_epochs and not self.is_pretrained:
            raise ValueError("unfreeze_last_epochs needs pretrained='imagenet' or weights")
        return self

    @property
    def is_pretrained(self) -> bool:
        return self.pretrained == "imagenet" or self.weights is not None


@dataclass
class TrainedClassifier:
    """A trained model (CPU, eval mode) with what is needed to apply it again.

    ``history`` has one row per validation check; ``best_check`` (1-based) is the restored one. ``converged`` is
    False when training ended by its budget while the validation score was still improving (the best check lies
    within the patience window before the end): the model may be undertrained; None without a validation set.
    ``failure`` says why training stopped at a non-finite loss (the best check before it restored, if any).
    """

    model: Classifier
    config: ClassifierConfig
    classes: list[str]
    size: int
    preprocess: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_check: int = 0
    converged: bool | None = None  # None: no validation set to judge by, or the run failed
    failure: str | None = None  # set when training stopped at a non-finite loss (:func:`non_finite_note`)

    @property
    def best_step(self) -> int:
        """Optimiser steps made when the restored weights were taken."""
        return int(self.history[self.best_check - 1]["steps"]) if self.best_check else 0

    @property
    def steps(self) -> int:
        """Optimiser steps made in all."""
        return int(self.history[-1]["steps"]) if self.history else 0

    def predict_proba(self, images: np.ndarray, batch_size: int = 128, device: str = "auto") -> np.ndarray:
        """Class probabilities (N, K) for uint8 images (N, S, S) in the training preprocessing."""
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[-1] != self.size or images.shape[-2] != self.size:
            raise CxraugError(f"expected uint8 images of shape (N, {self.size}, {self.size}), got {images.shape}")
        dev = resolve_device(device)
        model = self.model.to(dev).eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                out.append(torch.softmax(model(to_unit(images[i:i + batch_size]).to(dev)).float(), 1).cpu())
        self.model.cpu()
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), dtype=np.float32)

    def checkpoint(self) -> dict[str, Any]:
        """Weights-only checkpoint: tensors, numbers, strings, lists and dicts."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "classes": list(self.classes),
            "size": self.size,
            "preprocess": json.loads(json.dumps(self.preprocess, default=str)),
            "history": self.history,
            "best_check": self.best_check,
            "converged": self.converged,
            "failure": self.failure,
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        torch_save(self.checkpoint(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "TrainedClassifier":
        """Load a checkpoint written by :meth:`save` (weights-only; anything else is refused clearly)."""
        ckpt = torch_load(path)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise CxraugError(f"{path} is not a cxraug classifier checkpoint (no {CHECKPOINT_FORMAT!r} format tag)")
        cfg = ClassifierConfig.model_validate(ckpt["config"])
        model = _build(cfg, len(ckpt["classes"]), ckpt["size"], load_weights=False)
        model.load_state_dict(ckpt["state_dict"])
        return cls(model.eval(), cfg, list(ckpt["classes"]), int(ckpt["size"]), dict(ckpt["preprocess"]),
                   list(ckpt["history"]), int(ckpt.get("best_check", ckpt.get("best_epoch", 0))),
                   ckpt.get("converged"), ckpt.get("failure"))


def undertrained_note(trained: TrainedClassifier) -> str:
    """The one-line warning for a run that ended while its validation score was still improving."""
    return (f"classifier may be undertrained: its best validation check came at step {trained.best_step} of "
            f"{trained.steps}, within the patience window of the end of its budget; raise epochs/max_steps")


def _build(cfg: ClassifierConfig, num_classes: int, size: int, load_weights: bool = True) -> Classifier:
    return build_classifier(cfg.model, num_classes, size, head=cfg.head, pretrained=cfg.is_pretrained,
                            weights=cfg.weights, load_weights=load_weights)


def _check_data(train: ImageSet, val: ImageSet, cfg: ClassifierConfig) -> int:
    if not len(train):
        raise CxraugError("the training set is empty")
    if list(val.classes) != list(train.classes):
        raise CxraugError(f"validation classes {val.classes} differ from training classes {train.classes}")
    if len(val) and val.size != train.size:
        raise CxraugError(f"validation images are {val.size} px, training images {train.size} px")
    if cfg.size is not None and cfg.size != train.size:
        raise CxraugError(f"the config asks for {cfg.size} px but the images are {train.size} px; "
                          "load the data at the classifier's size")
    return train.size


def loss_weights(cfg: ClassifierConfig, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
    """The cross-entropy class weights ``cfg.class_weights`` asks for (None = unweighted)."""
    if isinstance(cfg.class_weights, list):
        if len(cfg.class_weights) != num_classes:
            raise CxraugError(f"class_weights has {len(cfg.class_weights)} values for {num_classes} classes")
        return torch.tensor(cfg.class_weights, dtype=torch.float32)
    return class_weight_tensor(labels, num_classes) if cfg.class_weights else None


def class_weight_tensor(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Balanced weights n / (K * n_c) (scikit-learn), 0 for a class absent from the training labels."""
    present = np.unique(labels)
    w = np.zeros(num_classes, dtype=np.float32)
    w[present] = compute_class_weight("balanced", classes=present, y=labels) * len(present) / num_classes
    return torch.as_tensor(w)


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
class _Data:
    images: torch.Tensor  # uint8 (N, S, S)
    labels: torch.Tensor  # int64 (N,)
    synthetic: torch.Tensor | None = None  # bool (N,), training data only

    @classmethod
    def of(cls, images: ImageSet) -> "_Data":
        return cls(torch.as_tensor(images.images), torch.as_tensor(images.labels), torch.as_tensor(images.synthetic))


class WeightedCE:
    """Cross-entropy with per-class weights, as a weighted *sum* and the weight total it is divided by.

    Dividing each rank's sum by the weight total of the whole *global* batch makes the DDP gradient average equal
    the single-process weighted mean exactly, even when class proportions differ between the ranks' slices.
    Synthetic images (``synthetic`` mask) may weigh ``synthetic_weight`` x their class weight and learn soft
    targets ``(1 - e) onehot + e / K``: with weight 0 a batch's loss is exactly that of its real images.
    """

    def __init__(self, weight: torch.Tensor | None, num_classes: int, device: torch.device,
                 synthetic_weight: float = 1.0, smoothing: float = 0.0) -> None:
        self.weight = (torch.ones(num_classes) if weight is None else weight).to(device)
        self._sum = nn.CrossEntropyLoss(weight=self.weight, reduction="sum")
        self.num_classes = num_classes
        self.synthetic_weight, self.smoothing = synthetic_weight, smoothing

    def _plain(self, synthetic: torch.Tensor | None) -> bool:
        return synthetic is None or not bool(synthetic.any()) or (self.synthetic_weight == 1 and self.smoothing == 0)

    def _sample_weight(self, y: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        return self.weight[y] * torch.where(synthetic, self.synthetic_weight, 1.0)

    def sum(self, logits: torch.Tensor, y: torch.Tensor, synthetic: torch.Tensor | None = None) -> torch.Tensor:
        if self._plain(synthetic):
            return self._sum(logits.float(), y)
        assert synthetic is not None
        target = nn.functional.one_hot(y, self.num_classes).float()
        soft = target * (1 - self.smoothing) + self.smoothing / self.num_classes
        target = torch.where(synthetic[:, None], soft, target)
        nll = -(target * torch.log_softmax(logits.float(), 1)).sum(1)
        return (self._sample_weight(y, synthetic) * nll).sum()

    def total(self, y: torch.Tensor, synthetic: torch.Tensor | None = None) -> torch.Tensor:
        if self._plain(synthetic):
            return self.weight[y].sum()
        assert synthetic is not None
        return self._sample_weight(y, synthetic).sum().clamp(min=1e-12)  # an all-synthetic batch at weight 0


def macro_f1(confusion: torch.Tensor) -> float:
    """Macro-F1 of a (K, K) [true, predicted] confusion matrix over the classes that occur in it."""
    tp = confusion.diagonal().double()
    support, predicted = confusion.sum(1).double(), confusion.sum(0).double()
    f1 = torch.where(support + predicted > 0, 2 * tp / (support + predicted).clamp(min=1), torch.zeros_like(tp))
    present = support > 0
    return float(f1[present].mean()) if bool(present.any()) else math.nan


def _validate(model: nn.Module, data: _Data, loss: WeightedCE, device: torch.device, num_classes: int,
              batch_size: int = 256) -> dict[str, float]:
    """Weighted mean validation loss, accuracy and macro-F1."""
    model.eval()
    loss_sum, weight_sum = 0.0, 0.0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    with torch.no_grad():
        for i in range(0, len(data.labels), batch_size):
            x = to_unit(data.images[i:i + batch_size]).to(device)
            y = data.labels[i:i + batch_size].to(device)
            logits = model(x).float()
            loss_sum += float(loss.sum(logits, y))
            weight_sum += float(loss.total(y))
            codes = y.cpu() * num_classes + logits.argmax(1).cpu()
            confusion += torch.bincount(codes, minlength=num_classes ** 2).view(num_classes, num_classes)
    return {"val_loss": loss_sum / weight_sum, "val_acc": float(confusion.diagonal().sum()) / len(data.labels),
            "val_f1": macro_f1(confusion)}


def _better(metrics: dict[str, float], best: dict[str, float] | None, monitor: str) -> bool:
    """Is this check better than the best so far? ``val_f1``: higher macro-F1, ties broken by lower loss."""
    if best is None:
        return True
    if monitor == "val_loss":
        return metrics["val_loss"] < best["val_loss"]
    return (metrics["val_f1"], -metrics["val_loss"]) > (best["val_f1"], -best["val_loss"])


def _train_epoch(fabric: Fabric, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: WeightedCE,
                 data: _Data, batches: Iterator[np.ndarray], policy: nn.Module | None) -> tuple[float, int, int]:
    """Optimiser steps over ``batches`` of *global* batch indices (each rank trains on its ``[rank::world]``
    slice); returns (sum over steps of the batch's weighted mean loss, correct, images) over all ranks."""
    model.train()
    world, rank = fabric.world_size, fabric.global_rank
    loss_sum, correct, seen = 0.0, 0, 0
    for batch in batches:
        idx = batch[rank::world]
        x = to_unit(data.images[idx]).to(fabric.device)
        y = data.labels[idx].to(fabric.device)
        syn = None if data.synthetic is None else data.synthetic[idx].to(fabric.device)
        if policy is not None:
            x = policy(x)
        logits = model(x)
        total = loss_fn.total(data.labels[batch].to(fabric.device),
                              None if data.synthetic is None else data.synthetic[batch].to(fabric.device))
        part = loss_fn.sum(logits, y, syn) / total
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(part * world)  # DDP averages gradients over ranks; the parts sum to the batch mean
        optimizer.step()
        faults.point("classifier")
        loss_sum += float(part.detach())
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    if world > 1:
        loss_sum, correct, seen = fabric.all_reduce(
            torch.tensor([loss_sum, correct, seen], dtype=torch.float64), reduce_op="sum").tolist()
    return loss_sum, int(correct), int(seen)


def fit(fabric: Fabric, train: ImageSet, val: ImageSet, cfg: ClassifierConfig,
        out_dir: str | os.PathLike[str] | None = None, tensorboard: bool | None = False) -> TrainedClassifier:
    """The training loop on an already launched Fabric (one process of a DDP group or a single process)."""
    size = _check_data(train, val, cfg)
    k = len(train.classes)
    seed_everything(cfg.seed)
    net = _build(cfg, k, size)
    seed_everything(cfg.seed + fabric.global_rank)  # augmentation and dropout differ per rank
    policy = POLICIES.get(cfg.augment)(cfg.augment_magnitude) if cfg.augment else None
    tr = _Data.of(train)
    va = _Data(torch.as_tensor(val.images), torch.as_tensor(val.labels))
    loss_fn = WeightedCE(loss_weights(cfg, train.labels, k), k, fabric.device, cfg.synthetic_weight,
                         cfg.synthetic_label_smoothing)
    world = fabric.world_size
    stream = batch_stream(len(tr.labels), cfg.batch_size * world, cfg.seed)
    per_pass = math.ceil(len(tr.labels) / (cfg.batch_size * world))
    every, budget = default_budget(cfg, len(tr.labels), world)
    phases = [Phase("train", budget, cfg.lr, tr, stream, per_pass)]
    if cfg.synthetic_schedule == "pretrain-finetune":
        phases = pretrain_finetune(phases[0], train, cfg, world)
    if cfg.unfreeze_last_epochs:
        phases.append(Phase("fine-tune", cfg.unfreeze_last_epochs * per_pass, cfg.unfreeze_lr, tr, stream, per_pass))
    history: list[dict[str, Any]] = []
    best: dict[str, float] | None = None
    best_check, best_state = 0, copy.deepcopy(net.state_dict())
    total_steps, stopped_early, failure = 0, False, None
    tb = None
    if out_dir is not None and fabric.is_global_zero:
        from cxraug.tensorboard import summary_writer

        tb = summary_writer(Path(out_dir) / "tb", tensorboard)
    with make_progress() as prog:
        task = prog.add_task(f"{cfg.model}", total=sum(p.budget for p in phases), visible=fabric.is_global_zero)
        for ph in phases:
            phase, budget, lr, data, stream, per_pass = ph.name, ph.budget, ph.lr, ph.data, ph.stream, ph.per_pass
            if phase == "fine-tune":
                net.load_state_dict(best_state)
                net.unfreeze_last_block()
            if phase == "finetune-real":
                net.load_state_dict(best_state)
                stopped_early = False  # convergence is judged on the last stage
            chunks = check_steps(budget, every)
            optimizer = make_optimizer(cfg, [p for p in net.parameters() if p.requires_grad], lr)
            schedule = make_schedule(cfg, optimizer, len(chunks))
            model = fabric.setup_module(net)
            optimizer = fabric.setup_optimizers(optimizer)
            bad = 0
            for steps in chunks:
                start = time.perf_counter()
                loss_sum, correct, seen = _train_epoch(fabric, model, optimizer, loss_fn, data,
                                                       (next(stream) for _ in range(steps)), policy)
                total_steps += steps
                lr_now = optimizer.param_groups[0]["lr"]
                if schedule is not None:
                    schedule.step()
                scores = _validate(model, va, loss_fn, fabric.device, k) if len(va.labels) else \
                    {"val_loss": math.nan, "val_acc": math.nan, "val_f1": math.nan}
                check = len(history) + 1
                history.append({"check": check, "phase": phase, "steps": total_steps,
                                "epoch": round(total_steps / per_pass, 3), "lr": lr_now,
                                "train_loss": loss_sum / steps, "train_acc": correct / seen, **scores,
                                "seconds": time.perf_counter() - start})
                if tb is not None:
                    for key in ("train_loss", "val_loss", "train_acc", "val_acc", "val_f1", "lr"):
                        tb.add_scalar(f"{phase}/{key}", history[-1][key], total_steps)
                finite = math.isfinite(loss_sum) and (math.isfinite(scores["val_loss"]) or not len(va.labels))
                if not bool(fabric.broadcast(finite, src=0)):
                    failure = non_finite_note(history[-1], best_check)
                    break
                # without a validation set every check counts as the best: the last weights are kept
                improved = bool(fabric.broadcast(not len(va.labels) or _better(scores, best, cfg.monitor), src=0))
                if improved:
                    best, best_check, bad = scores, check, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    bad += 1
                prog.update(task, advance=steps, description=f"{cfg.model} {phase} step {total_steps} "
                            f"val_loss {scores['val_loss']:.4f} val_f1 {scores['val_f1']:.3f}")
                if cfg.early_stopping and bad >= cfg.patience:
                    stopped_early = True
                    prog.update(task, total=total_steps)
                    break
            if failure is not None:
                break
    if tb is not None:
        tb.close()
    net.load_state_dict(best_state)
    window = cfg.patience * every
    converged = (stopped_early or total_steps - int(history[best_check - 1]["steps"]) >= window) \
        if len(va.labels) and failure is None else None
    result = TrainedClassifier(net.cpu().eval(), cfg, list(train.classes), size,
                               dict(train.meta.get("preprocess", {})), history, best_check, converged, failure)
    if out_dir is not None and fabric.is_global_zero:
        if failure is None or best_check:
            result.save(Path(out_dir) / "best.pt")
        write_history_csv(history, Path(out_dir) / "history.csv")
    return result


@dataclass
class Phase:
    """One stretch of training: its name (``history.csv``'s ``phase``), step budget, learning rate, data and
    batch stream (``per_pass``: optimiser steps per pass over its data)."""

    name: str
    budget: int
    lr: float
    data: _Data
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
            Phase("finetune-real", second, whole.lr, _Data.of(real), batch_stream(len(real), batch, cfg.seed + 1),
                  math.ceil(len(real) / batch))]


def non_finite_note(row: dict[str, Any], best_check: int) -> str:
    """Why a run stopped at a non-finite loss, and what it kept."""
    kept = (f"the best check ({best_check}) is restored" if best_check else
            "no check before it to restore")
    return (f"non-finite loss by step {row['steps']} (train loss {row['train_loss']:.4g}, validation loss "
            f"{row['val_loss']:.4g}); training stopped, {kept}. Lower the learning rate")


def write_history_csv(history: list[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    write_csv(path, history, list(history[0]) if history else ["epoch"])


def _fit_rank(fabric: Fabric, threads: int, train: ImageSet, val: ImageSet, cfg: ClassifierConfig,
              out_dir: str | os.PathLike[str] | None, result_path: str, tensorboard: bool | None) -> str:
    """One DDP process: its share of the CPU threads, :func:`fit`; rank 0 saves the result to ``result_path``
    and returns only that path (Fabric hands results back through a pipe that large objects deadlock)."""
    torch.set_num_threads(threads)
    trained = fit(fabric, train, val, cfg, out_dir, tensorboard)
    if fabric.is_global_zero:
        trained.save(result_path)
    return result_path


def train_classifier(train: ImageSet, val: ImageSet, cfg: ClassifierConfig,
                     out_dir: str | os.PathLike[str] | None = None, device: str = "auto",
                     devices: int = 1, tensorboard: bool | None = False) -> TrainedClassifier:
    """Train one classifier; validation drives early stopping; returns the best epoch's model (see module doc).
    With ``out_dir``, ``tensorboard`` (:func:`cxraug.tensorboard.summary_writer`; None: when installed) writes the
    losses, accuracies and learning rate of every validation check to ``out_dir/tb``.

    ``devices=N > 1`` trains one model with DDP over N processes (GPUs, or CPU processes with gloo): every
    rank takes its slice ``[rank::N]`` of each global batch of ``N * batch_size`` images, gradients are averaged,
    rank 0 writes the checkpoint and its result is returned.
    """
    if devices < 1:
        raise CxraugError(f"devices must be >= 1, got {devices}")
    fabric = make_fabric(device, cfg.precision, devices)
    if devices == 1:
        return fit(fabric, train, val, cfg, out_dir, tensorboard)
    threads = max(1, torch.get_num_threads() // devices)
    with tempfile.TemporaryDirectory(prefix="cxraug-ddp-") as tmp:
        path = fabric.launch(_fit_rank, threads, train, val, cfg, out_dir, os.path.join(tmp, "result.pt"),
                             tensorboard)
        return TrainedClassifier.load(path)
