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

A policy with a ``filter`` keeps only the edits that pass it (:func:`curated_edits`): a judge trained on the real
training images scores rounds of edits until ``per_image`` x sources pass per class or ``max_draw`` x that many
were made; the unit's ``curation`` record holds the counts under the policy's key, like a curated free-sample pool.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from cxraug.augment.edits import add_record, edit_images, edit_pairs, edit_set, generate_edits
from cxraug.augment.synthetic import SyntheticPolicy, empty_synthetic
from cxraug.data.imageset import ImageSet
from cxraug.metrics.curation import curate_class
from cxraug.metrics.edit_audit import audit_edits
from cxraug.study.judges import judge_config, real_part, trained_judge
from cxraug.study.specs import GeneratorUnitSpec

#: source -> edit pairs kept per class for the report
PAIRS_SHOWN = 6


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def edit_pools(spec: GeneratorUnitSpec, model: Any, train: ImageSet, val: ImageSet, extractor: Any,
               to_arrays: Callable[[ImageSet], dict[str, np.ndarray]], cache_dir: str | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """The edit pool of every edit policy of ``spec`` (edits of ``train``'s real images only), its record, and
    the curation record of each policy with a filter (keyed by the policy's key, in the shape of
    :func:`cxraug.study.units.curate_pools`' records). ``cache_dir``: where judges are cached."""
    arrays: dict[str, np.ndarray] = {}
    record: dict[str, Any] = {}
    curation: dict[str, Any] = {}
    index = {str(p): i for i, p in enumerate(train.paths)}
    audit_on = spec.drop_near_copies or spec.metrics.memorisation
    for policy in spec.edits:
        if policy.filter is None:
            pool, classes = generate_edits(train, model, policy, seed=spec.seed)
        else:
            pool, classes, curation[policy.key] = curated_edits(spec, model, policy, train, val, cache_dir)
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
    return arrays, record, curation


def _round_rng(seed: int, label_index: int, rnd: int) -> tuple[np.random.Generator, int]:
    """The strength generator and edit seed of a curation round (independent of the unfiltered edits' seeds)."""
    ss = np.random.SeedSequence([int(seed), 0xED17, int(label_index), int(rnd)])
    return np.random.default_rng(ss), int(ss.generate_state(1)[0])


def curated_edits(spec: GeneratorUnitSpec, model: Any, policy: SyntheticPolicy, train: ImageSet, val: ImageSet,
                  cache_dir: str | None) -> tuple[ImageSet, dict[str, Any], dict[str, Any]]:
    """Edits that pass the policy's filter: per label class, rounds of ``per_image`` x its sources edits (cycling
    through the sources, fresh strengths and noise each round) are judged until that many pass or ``max_draw`` x
    that many were made (:func:`cxraug.metrics.curation.curate_class`); returns the kept edits, their edit record
    and the curation record (judge, per class drawn / kept / rejected by each test)."""
    f = policy.filter
    assert f is not None
    judge, about = trained_judge(judge_config(spec, f), train, val, cache_dir)
    real = real_part(train)
    lo, hi = policy.strength_range
    pool = empty_synthetic(train)
    record: dict[str, Any] = {}
    classes: dict[str, Any] = {}
    for c, label, members in edit_pairs(train, model, policy):
        base = np.repeat(members, int(policy.per_image or 0))
        if not len(base):
            continue
        li = train.classes.index(label)
        made: list[tuple[np.ndarray, np.ndarray]] = []  # (sources, strengths) of every round, in draw order

        def draw(rnd: int, n: int, c: str = c, label: str = label, base: np.ndarray = base,
                 made: list = made) -> np.ndarray:
            rng, seed = _round_rng(spec.seed, train.classes.index(c), rnd)
            src = base[(rnd * n + np.arange(n)) % len(base)]
            strengths = rng.uniform(lo, hi, n) if hi > lo else np.full(n, lo)
            made.append((src, strengths))
            return edit_images(train, model, policy, src, label, strengths, seed).images

        images, (res,) = curate_class(draw, len(base), li, [f], judge, judge.features(real.of_class(label).images))
        src = np.concatenate([m[0] for m in made])[res.kept]
        strengths = np.concatenate([m[1] for m in made])[res.kept]
        pool = pool.concat(edit_set(train, policy, images[res.kept], src, label))
        add_record(record, train, policy, c, label, len(members), src, strengths)
        classes[label] = _merged(classes[label], res.record) if label in classes else res.record
    return pool, record, {"filter": f.model_dump(), "judge": about, "classes": classes}


def _merged(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two source classes' curation counts for one label class (edits towards a ``target``), added up."""
    out = {k: a[k] + b[k] for k in a if isinstance(a[k], int) and not isinstance(a[k], bool)}
    return {**out, "kept_fraction": out["kept"] / out["drawn"], "short": a["short"] or b["short"]}


def whole_pool_counts(pool: ImageSet) -> dict[str, int]:
    """Every image of an edit pool, per class (an edit arm takes all of its pool)."""
    counts = np.bincount(pool.labels.astype(int), minlength=len(pool.classes))
    return {c: int(n) for c, n in zip(pool.classes, counts) if n}
