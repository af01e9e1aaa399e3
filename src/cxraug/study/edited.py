"""Edit pools of a generator unit (arms whose policy has ``mode: edit``): one pool per distinct edit policy,
stored in the unit's pool arrays as ``<policy key>__images`` / ``__labels`` / ``__paths`` (read back with
:func:`cxraug.study.units.curated_pool`), plus ``<key>__source_images`` / ``__source_labels`` /
``__source_paths``: the sources of the first :data:`PAIRS_SHOWN` edits of each class (the report's source ->
edit pairs, aligned with the first edits of that class).

The record the unit result keeps per policy: per label class the source classes, sources, edits, every edit's
strength and its source's path (training images only), and the edit audit
(:func:`cxraug.metrics.edit_audit.audit_edits`: distance to the source apart from distance to the other
training images). With the generator entry's near-copy gate, edits that are near-copies of *other* training
images are dropped (an edit arm then takes the survivors; the record says how many were dropped).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from cxraug.augment.edits import generate_edits
from cxraug.data.imageset import ImageSet
from cxraug.metrics.edit_audit import audit_edits
from cxraug.study.specs import GeneratorUnitSpec

#: source -> edit pairs kept per class for the report
PAIRS_SHOWN = 6


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def edit_pools(spec: GeneratorUnitSpec, model: Any, train: ImageSet, val: ImageSet, extractor: Any,
               to_arrays: Callable[[ImageSet], dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray],
                                                                                 dict[str, Any]]:
    """The edit pool of every edit policy of ``spec`` (edits of ``train``'s real images only) and its record."""
    arrays: dict[str, np.ndarray] = {}
    record: dict[str, Any] = {}
    index = {str(p): i for i, p in enumerate(train.paths)}
    audit_on = spec.drop_near_copies or spec.metrics.memorisation
    for policy in spec.edits:
        pool, classes = generate_edits(train, model, policy, seed=spec.seed)
        sources = np.array([index[p] for c in classes.values() for p in c["source_paths"]], dtype=np.int64)
        about: dict[str, Any] = {"policy": policy.model_dump(), "classes": classes, "audit": None}
        if audit_on and len(pool):
            res = audit_edits(pool.images, sources, train.images, val.images, extractor=extractor, seed=0)
            flags = np.asarray(res["near_copy"], dtype=bool)
            about["audit"] = {"flagged": res["flagged"], "dropped": int(flags.sum()) if spec.drop_near_copies else 0,
                              "source_distance": _mean(res["source_distance"]),
                              "other_distance": _mean(res["other_distance"]), "calibration": res["calibration"]}
            for label, rec in classes.items():
                rows = pool.labels == train.classes.index(label)
                rec["flagged"] = int(flags[rows].sum())
                rec["source_distance"] = _mean(np.asarray(res["source_distance"])[rows].tolist())
                rec["other_distance"] = _mean(np.asarray(res["other_distance"])[rows].tolist())
            if spec.drop_near_copies:
                pool, sources = pool.subset(~flags), sources[~flags]
        shown = np.concatenate([np.flatnonzero(pool.labels == li)[:PAIRS_SHOWN] for li in np.unique(pool.labels)]
                               ) if len(pool) else np.zeros(0, dtype=np.int64)
        pairs = train.subset(sources[shown])
        pairs.labels = pool.labels[shown]  # a source shown under its edit's label (a target edit's class)
        arrays.update({f"{policy.key}__{k}": v for k, v in to_arrays(pool).items()})
        arrays.update({f"{policy.key}__source_{k}": v for k, v in to_arrays(pairs).items()})
        record[policy.key] = about
    return arrays, record


def whole_pool_counts(pool: ImageSet) -> dict[str, int]:
    """Every image of an edit pool, per class (an edit arm takes all of its pool)."""
    counts = np.bincount(pool.labels.astype(int), minlength=len(pool.classes))
    return {c: int(n) for c, n in zip(pool.classes, counts) if n}
