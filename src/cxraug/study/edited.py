"""Edit pools of a generator unit (arms whose policy has ``mode: edit``): one pool per distinct edit policy,
stored in the unit's pool arrays as ``<policy key>__images`` / ``__labels`` / ``__paths`` (read back with
:func:`cxraug.study.units.curated_pool`), and the record the unit result keeps per policy: per label class the
source classes, sources, edits, every edit's strength and its source's path (training images only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cxraug.augment.edits import generate_edits
from cxraug.data.imageset import ImageSet
from cxraug.study.specs import GeneratorUnitSpec


def edit_pools(spec: GeneratorUnitSpec, model: Any, train: ImageSet,
               to_arrays: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The edit pool of every edit policy of ``spec`` (edits of ``train``'s real images only) and its record."""
    arrays: dict[str, np.ndarray] = {}
    record: dict[str, Any] = {}
    for policy in spec.edits:
        pool, classes = generate_edits(train, model, policy, seed=spec.seed)
        arrays.update({f"{policy.key}__{k}": v for k, v in to_arrays(pool).items()})
        record[policy.key] = {"policy": policy.model_dump(), "classes": classes}
    return arrays, record


def whole_pool_counts(pool: ImageSet) -> dict[str, int]:
    """Every image of an edit pool, per class (an edit arm takes all of its pool)."""
    counts = np.bincount(pool.labels.astype(int), minlength=len(pool.classes))
    return {c: int(n) for c, n in zip(pool.classes, counts) if n}
