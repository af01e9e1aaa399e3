"""The typed contract between the plan and the unit functions: frozen Pydantic specs.

A unit's key is the content hash of its spec's ``model_dump()`` (:func:`content_key`): a field added here
changes every key, so study folders are reused only while these models dump exactly what they dumped before.
Fields added after study folders existed are listed in :data:`ADDED_LATER` and left out of the key while they
hold their default, so a unit that does not use them keeps its old key.
Settings owned by another package stay that package's keyword arguments (``config`` of a generator,
``classifier`` of a classifier unit) and are validated there.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cxraug.augment.synthetic import CurationFilter, SyntheticPolicy
from cxraug.study.protocol import ArmSpec, SplitSpec

#: (path in the dump, default): fields added later, dropped from a key while at their default
ADDED_LATER: tuple[tuple[tuple[str, ...], Any], ...] = (
    (("curations",), []),
    (("arm", "policy", "filter"), None),
    (("arm", "synthetic_weight"), 1.0),
    (("arm", "synthetic_label_smoothing"), 0.0),
    (("arm", "schedule"), "mixed"),
    (("arm", "finetune_fraction"), 0.5),
    (("edits",), []),
    (("arm", "policy", "per_image"), None),
    (("arm", "policy", "strength"), None),
    (("arm", "policy", "steps"), None),
    (("arm", "policy", "guidance"), None),
    (("arm", "policy", "target"), None),
)


def _drop_later(dump: dict[str, Any]) -> dict[str, Any]:
    for path, default in ADDED_LATER:
        parent: Any = dump
        for name in path[:-1]:
            parent = parent.get(name) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and path[-1] in parent and parent[path[-1]] == default:
            del parent[path[-1]]
    return dump


def content_key(spec: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of ``spec``."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnitRegime(_Frozen):
    """The regime of a unit's training subset (its name is a grid coordinate, not part of the key)."""

    n_per_class: int | None
    cap: dict[str, int]


class UnitMetrics(_Frozen):
    """What a generator unit scores its pool with (the statistics settings are the driver's)."""

    image_metrics: bool
    features: str
    encoder: dict[str, Any]
    samples: int
    nearest_k: int
    memorisation: bool


class UnitExecution(_Frozen):
    threads: int
    device: str


class StepBudget(_Frozen):
    """The optimiser-step budget every arm of a regime shares (counted on the real training subset)."""

    eval_every: int
    max_steps: int
    early_stopping: bool


class UnitTraining(_Frozen):
    loss_weighting: Literal["none", "balanced"]


class _UnitSpec(_Frozen):
    """What every unit's result depends on besides its own settings."""

    version: str
    data: str
    test_data: str | None
    split: SplitSpec
    preprocess: dict[str, Any]
    classes: list[str]
    regime: UnitRegime
    draw: int
    execution: UnitExecution

    @property
    def key(self) -> str:
        return content_key(_drop_later(self.model_dump()))


class GeneratorUnitSpec(_UnitSpec):
    kind: Literal["generator"] = "generator"
    model: str
    config: dict[str, Any]  # the model's Config fields (validated by the generator)
    train_classes: list[str] | None
    checkpoint: Literal["best", "last"]
    pool: dict[str, int]  # synthetic images per class every arm using this unit takes from
    drop_near_copies: bool
    source: str | None
    metrics: UnitMetrics
    curations: list[CurationFilter] = []  # the distinct filters of the arms using this unit (a curated pool each)
    edits: list[SyntheticPolicy] = []  # the distinct mode-edit policies of its arms (an edit pool each)

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))


class ClassifierUnitSpec(_UnitSpec):
    kind: Literal["classifier"] = "classifier"
    classifier: dict[str, Any]  # ClassifierConfig keyword arguments (validated by the classifier package)
    size: int | None
    arm: ArmSpec
    generator_unit: str | None
    training: UnitTraining
    budget: StepBudget
