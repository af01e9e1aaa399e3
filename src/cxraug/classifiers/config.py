"""What determines a classifier run: :class:`ClassifierConfig` (validated; extra fields refused) and the
automatic budget's constants."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cxraug.augment import POLICIES
from cxraug.classifiers.base import CLASSIFIERS
from cxraug.classifiers.heads import HEADS

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
    channels_last: bool = Field(True, description="weights and activations in channels_last memory format: the same "
                                "mathematics, measured faster for every registered classifier on CPU (training steps "
                                "1.0-1.45x, validation passes 1.3-2.2x; bench/step_formats.py, BENCHMARKS.md)")
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
