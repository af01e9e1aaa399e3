"""Classifier training with Lightning Fabric: one clean function per run, used by the CLI and the study runner.

``train_classifier(train, val, cfg, out_dir=None, device="auto") -> TrainedClassifier``

* Device and precision through Fabric: ``device`` ``auto`` | ``cpu`` | ``cuda``; bf16-mixed on GPU, fp32 on CPU
  (``cfg.precision``). Deterministic on CPU for a seed: same seed twice gives identical weights and metrics.
  Weights and activations are channels_last unless ``cfg.channels_last`` is False (the same function, other
  rounding; 4-d dropout then draws its masks in that layout's order).
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
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from lightning_fabric import Fabric
from torch import nn

from cxraug import faults
from cxraug.augment import POLICIES
from cxraug.classifiers.config import ClassifierConfig
from cxraug.classifiers.loss import WeightedCE, loss_weights
from cxraug.classifiers.steps import (Phase, TrainData, batch_stream, check_steps, default_budget, make_optimizer,
                                      make_schedule, pretrain_finetune)
from cxraug.classifiers.trained import TrainedClassifier, build_from_config
from cxraug.data.imageset import ImageSet, to_unit
from cxraug.device import make_fabric, seed_everything
from cxraug.errors import CxraugError
from cxraug.io import write_csv
from cxraug.ui import make_progress


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


def macro_f1(confusion: torch.Tensor) -> float:
    """Macro-F1 of a (K, K) [true, predicted] confusion matrix over the classes that occur in it."""
    tp = confusion.diagonal().double()
    support, predicted = confusion.sum(1).double(), confusion.sum(0).double()
    f1 = torch.where(support + predicted > 0, 2 * tp / (support + predicted).clamp(min=1), torch.zeros_like(tp))
    present = support > 0
    return float(f1[present].mean()) if bool(present.any()) else math.nan


def _validate(model: nn.Module, data: TrainData, loss: WeightedCE, device: torch.device, num_classes: int,
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
                 data: TrainData, batches: Iterator[np.ndarray], policy: nn.Module | None) -> tuple[float, int, int]:
    """Optimiser steps over ``batches`` of *global* batch indices (each rank trains on its ``[rank::world]``
    slice); returns (sum over steps of the batch's weighted mean loss, correct, images) over all ranks."""
    model.train()
    world, rank = fabric.world_size, fabric.global_rank
    # summed on the device in float64 (what Python floats would give) and read once: no host sync per step
    loss_sum = torch.zeros((), dtype=torch.float64, device=fabric.device)
    correct = torch.zeros((), dtype=torch.int64, device=fabric.device)
    seen = 0
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
        loss_sum += part.detach().double()
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    if world > 1:
        loss_total, correct_sum, seen_sum = fabric.all_reduce(
            torch.stack([loss_sum.cpu(), correct.cpu().double(), torch.tensor(float(seen), dtype=torch.float64)]),
            reduce_op="sum").tolist()
        return loss_total, int(correct_sum), int(seen_sum)
    return float(loss_sum), int(correct), seen


def fit(fabric: Fabric, train: ImageSet, val: ImageSet, cfg: ClassifierConfig,
        out_dir: str | os.PathLike[str] | None = None, tensorboard: bool | None = False) -> TrainedClassifier:
    """The training loop on an already launched Fabric (one process of a DDP group or a single process)."""
    size = _check_data(train, val, cfg)
    k = len(train.classes)
    seed_everything(cfg.seed)
    net = build_from_config(cfg, k, size)
    seed_everything(cfg.seed + fabric.global_rank)  # augmentation and dropout differ per rank
    policy = POLICIES.get(cfg.augment)(cfg.augment_magnitude) if cfg.augment else None
    tr = TrainData.of(train)
    va = TrainData(torch.as_tensor(val.images), torch.as_tensor(val.labels))
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
