"""A trained classifier and its weights-only checkpoint (``best.pt``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cxraug.classifiers.base import Classifier, build_classifier
from cxraug.classifiers.config import ClassifierConfig
from cxraug.data.imageset import to_unit
from cxraug.device import resolve_device
from cxraug.errors import CxraugError
from cxraug.io import torch_load, torch_save

CHECKPOINT_FORMAT = "cxraug-classifier/1"


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
        model = build_from_config(cfg, len(ckpt["classes"]), ckpt["size"], load_weights=False)
        model.load_state_dict(ckpt["state_dict"])
        return cls(model.eval(), cfg, list(ckpt["classes"]), int(ckpt["size"]), dict(ckpt["preprocess"]),
                   list(ckpt["history"]), int(ckpt.get("best_check", ckpt.get("best_epoch", 0))),
                   ckpt.get("converged"), ckpt.get("failure"))


def undertrained_note(trained: TrainedClassifier) -> str:
    """The one-line warning for a run that ended while its validation score was still improving."""
    return (f"classifier may be undertrained: its best validation check came at step {trained.best_step} of "
            f"{trained.steps}, within the patience window of the end of its budget; raise epochs/max_steps")


def build_from_config(cfg: ClassifierConfig, num_classes: int, size: int, load_weights: bool = True) -> Classifier:
    """The configured network, in the configured memory format (loaded weights keep it)."""
    net = build_classifier(cfg.model, num_classes, size, head=cfg.head, pretrained=cfg.is_pretrained,
                           weights=cfg.weights, load_weights=load_weights)
    return net.to(memory_format=torch.channels_last) if cfg.channels_last else net
