"""The two unit functions. They run in any process (the driver, a Ray worker): all inputs are arguments,
all outputs are the returned dict; the only files they touch are a generator's own work folder
(checkpoints, loss log, sample grids), which is what lets an interrupted generator resume.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from cxraug.augment.synthetic import (CurationFilter, SyntheticPolicy, SyntheticSource, empty_synthetic,
                                      generate_synthetic, policy_counts)
from cxraug.classifiers import ClassifierConfig, metrics_from_predictions, train_classifier
from cxraug.classifiers.loss import class_weight_tensor
from cxraug.data.imageset import ImageSet
from cxraug.data.resize import resize_uint8
from cxraug.device import resolve_device, seed_everything, set_threads
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Generator, GeneratorKind, TrainingDiverged
from cxraug.generators.card import write_model_card
from cxraug.metrics.curation import curate_class
from cxraug.metrics.encoder import EncoderConfig
from cxraug.metrics.memorisation import audit, drop_near_copies
from cxraug.metrics.quality import image_metrics, safe_name
from cxraug.metrics.scorer import make_scorer
from cxraug.study.edited import edit_pools, whole_pool_counts
from cxraug.study.judges import judge_config, real_part, trained_judge
from cxraug.study.specs import ClassifierUnitSpec, GeneratorUnitSpec

#: the gate draws this many times the needed images (plus 4) so that dropped near-copies can be replaced
GATE_HEADROOM = 1.25


#: the status of a unit that ran to its end; a unit that could not starts with "failed: " and says why in
#: ``failure``; it is stored like a finished one (re-running fails the same way) and left out of the statistics
OK = "ok"
NON_FINITE = "failed: non-finite loss"


def _prepare_process(threads: int, seed: int) -> None:
    set_threads(threads)
    seed_everything(seed)


def check_no_synthetic(name: str, images: ImageSet) -> None:
    """Canary: a validation or test set holding a synthetic image stops the study."""
    bad = int(images.synthetic.sum()) + sum(p.startswith("synthetic:") for p in images.paths)
    if bad:
        raise CxraugError(f"{bad} synthetic image(s) reached the {name} set; synthetic images belong to the "
                          "training fold only")


def pool_to_arrays(pool: ImageSet) -> dict[str, np.ndarray]:
    """A synthetic pool as plain arrays (what a generator unit returns and the driver stores)."""
    return {"images": pool.images, "labels": pool.labels, "paths": np.asarray(pool.paths, dtype=str)}


def pool_from_arrays(arrays: dict[str, np.ndarray], classes: list[str], meta: dict[str, Any]) -> ImageSet:
    paths = [str(p) for p in arrays["paths"]]
    return ImageSet(images=arrays["images"], labels=arrays["labels"], classes=list(classes),
                    patient_ids=np.asarray(paths, dtype=object), paths=paths,
                    synthetic=np.ones(len(paths), dtype=bool), meta=dict(meta))


# ----------------------------------------------------------------------------- generator unit
def _fit_models(spec: GeneratorUnitSpec, train: ImageSet, val: ImageSet, work: Path, device: str,
                extractor: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Train (or resume) the generator(s) of a unit; returns what the synthetic plug-in takes and fit records."""
    cls = GENERATORS.get(spec.model)
    cfg = cls.Config(**spec.config)
    classes = spec.train_classes or list(train.classes)
    preprocess = dict(train.meta.get("preprocess") or {})
    records = []

    def fit(gen: Generator, data: ImageSet, folder: Path, real: ImageSet, labelled: bool) -> Generator:
        scorer = None
        if extractor is not None:
            scorer = make_scorer(real.images, real.labels if labelled else None, features=extractor,
                                 size=cfg.size, seed=cfg.seed)
        res = gen.fit(data, folder, scorer=scorer, resume=True, progress=False)
        records.append({"folder": folder.name, "steps": res.steps, "stopped_early": res.stopped_early,
                        "best_step": res.best_step,
                        "best_kid": res.best_kid, "classes": sorted(c for c, n in data.counts().items() if n),
                        "counts": data.counts(), "stamp": gen.stamp,
                        "scorer": None if scorer is None else {**scorer.describe(), "against": "val"}})
        chosen = folder / "checkpoints" / f"{spec.checkpoint}.pt"
        return Generator.load(chosen if chosen.exists() else folder, device=device)

    if cls.kind is GeneratorKind.UNCONDITIONAL:
        models = {}
        for c in classes:
            gen = cls(cfg, classes=[c], device=device, preprocess=preprocess)
            models[c] = fit(gen, gen.training_set(train, c), work / safe_name(c), val.of_class(c), labelled=False)
        return models, records
    keep = np.isin(train.labels, [train.classes.index(c) for c in classes])
    vkeep = np.isin(val.labels, [val.classes.index(c) for c in classes])
    gen = cls(cfg, classes=list(train.classes), device=device, preprocess=preprocess)
    model = fit(gen, gen.training_set(train.subset(keep)), work / "model", val.subset(vkeep), labelled=True)
    if cls.kind is GeneratorKind.TRANSLATION:
        if not spec.source:
            raise CxraugError(f"{spec.model} translates images: set the generator's source class (source:)")
        source = train.of_class(spec.source).images
        return [SyntheticSource(model, c, source=source) for c in classes if c != spec.source], records
    return model, records


def run_generator_unit(spec: GeneratorUnitSpec, train: ImageSet, val: ImageSet, work_dir: str, threads: int,
                       device: str, extractor: Any, upstream: Any = None,
                       cache_dir: str | None = None) -> dict[str, Any]:
    """Train one generator entry on one training subset, draw its synthetic pool (and one curated pool per
    filter of its arms) and score it. ``cache_dir``: where the curation judge is cached (by content hash)."""
    t0 = time.time()
    _prepare_process(threads, spec.seed)
    check_no_synthetic("generator training", train)
    dev = str(resolve_device(device))
    work = Path(work_dir)
    try:
        models, records = _fit_models(spec, train, val, work, dev, extractor)
    except TrainingDiverged as exc:
        return {"status": NON_FINITE, "failure": str(exc), "wall_s": time.time() - t0}
    pool_spec = spec.pool
    gate = spec.drop_near_copies and bool(pool_spec)
    gate_record: dict[str, int] = {}
    if pool_spec:
        n = max(pool_spec.values())
        n = math.ceil(n * GATE_HEADROOM) + 4 if gate else n  # room for the images the gate drops
        policy = SyntheticPolicy(mode="add", n_per_class=n, classes=sorted(pool_spec))
        pool = generate_synthetic(train, models, policy, seed=spec.seed)
        if gate:
            pool, gate_record = gate_near_copies(pool, train, val, extractor, pool_spec)
    else:
        pool = empty_synthetic(train)
    arrays = pool_to_arrays(pool)
    curation: dict[str, Any] = {}
    if spec.curations and pool_spec:
        curated, curation = curate_pools(spec, models, train, val, extractor if spec.drop_near_copies else None,
                                         cache_dir)
        arrays.update(curated)
    edits: dict[str, Any] = {}
    if spec.edits:
        edited, edits, edit_curation = edit_pools(spec, models, train, val, extractor, pool_to_arrays, cache_dir)
        arrays.update(edited)
        curation.update(edit_curation)
    metrics: dict[str, Any] = {}
    by_step: list[dict[str, Any]] = []
    ms = spec.metrics
    if ms.image_metrics and extractor is not None and len(pool):
        metrics = image_metrics(extractor, pool, train, val, ms.samples, ms.nearest_k,
                                work if ms.memorisation else None, seed=0)
        by_step = _scheduled_checkpoints(spec, work, train, val, extractor, dev)
    _model_cards(spec, work, records, metrics, str(train.meta.get("data", "")))
    return {"pool": arrays, "image_metrics": metrics, "by_step": by_step, "fit": records,
            "near_copy_gate": gate_record, "curation": curation, "edits": edits, "wall_s": time.time() - t0}


#: rejected candidates kept per class and filter for the report's kept-vs-rejected grid
REJECTED_SHOWN = 8


def _round_seed(seed: int, rnd: int) -> int:
    """The sampling seed of a curation draw round (independent of the unfiltered pool's seed)."""
    return int(np.random.SeedSequence([int(seed), 0xC0A7, int(rnd)]).generate_state(1)[0])


def curate_pools(spec: GeneratorUnitSpec, models: Any, train: ImageSet, val: ImageSet, gate_extractor: Any,
                 cache_dir: str | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One curated pool per filter (arrays named ``<filter key>__images`` etc.) and its record: the judge (trained
    on the real training subset), its validation accuracy, and per class drawn / kept / rejected by each test.
    Filters with the same judge share one candidate stream per class."""
    near_copy = None
    if gate_extractor is not None:
        def near_copy(images: np.ndarray) -> np.ndarray:
            return np.asarray(audit(images, train.images, val.images, extractor=gate_extractor, seed=0)["near_copy"])
    groups: dict[str, list[CurationFilter]] = {}
    for f in spec.curations:
        groups.setdefault(judge_config(spec, f).model_dump_json(), []).append(f)
    arrays: dict[str, np.ndarray] = {}
    record: dict[str, Any] = {}
    real = real_part(train)  # the real images: the judge's and the realism test's
    for config, filters in groups.items():
        judge, about = trained_judge(EncoderConfig.model_validate_json(config), train, val, cache_dir)
        kept: dict[str, list[ImageSet]] = {f.key: [] for f in filters}
        shown: dict[str, list[ImageSet]] = {f.key: [] for f in filters}
        classes: dict[str, dict[str, Any]] = {f.key: {} for f in filters}
        for c, need in sorted(spec.pool.items()):
            li = train.classes.index(c)

            def draw(rnd: int, n: int, c: str = c) -> np.ndarray:
                policy = SyntheticPolicy(mode="add", n_per_class=n, classes=[c])
                return generate_synthetic(train, models, policy, seed=_round_seed(spec.seed, rnd)).images

            images, results = curate_class(draw, need, li, filters, judge, judge.features(real.of_class(c).images),
                                           near_copy)
            for f, res in zip(filters, results):
                classes[f.key][c] = res.record
                out = np.setdiff1d(np.arange(res.record["drawn"]), res.kept)[:REJECTED_SHOWN]
                kept[f.key].append(_labelled(images[res.kept], li, train, f"curated:{f.key}:{c}"))
                shown[f.key].append(_labelled(images[out], li, train, f"rejected:{f.key}:{c}"))
        for f in filters:
            for parts, kind in ((kept, ""), (shown, "rejected_")):
                pool = empty_synthetic(train)
                for p in parts[f.key]:
                    pool = pool.concat(p)
                arrays.update({f"{f.key}__{kind}{k}": v for k, v in pool_to_arrays(pool).items()})
            record[f.key] = {"filter": f.model_dump(), "judge": about, "classes": classes[f.key]}
    return arrays, record


def _labelled(images: np.ndarray, label: int, train: ImageSet, prefix: str) -> ImageSet:
    names = [f"synthetic:{prefix}:{k}" for k in range(len(images))]
    return ImageSet(images=images, labels=np.full(len(images), label), classes=train.classes,
                    patient_ids=np.asarray(names, dtype=object), paths=names,
                    synthetic=np.ones(len(images), dtype=bool), meta=dict(train.meta))


def curated_pool(arrays: dict[str, np.ndarray], key: str, classes: list[str], meta: dict[str, Any],
                 kind: str = "") -> ImageSet:
    """The curated images of filter ``key`` (``kind="rejected_"``: the shown rejected ones), or the edits of edit
    policy ``key`` (``kind="source_"``: the sources of the shown edits), from a generator unit's pool arrays."""
    return pool_from_arrays({k: arrays[f"{key}__{kind}{k}"] for k in ("images", "labels", "paths")}, classes, meta)


def _model_cards(spec: GeneratorUnitSpec, work: Path, records: list[dict[str, Any]],
                 metrics: dict[str, dict[str, float]], data: str) -> None:
    """``MODEL_CARD.md`` in every trained model's folder, with the unit's image metrics of its classes."""
    config = GENERATORS.get(spec.model).Config(**spec.config).model_dump()
    for r in records:
        write_model_card(work / r["folder"], model=spec.model, config=config, train_counts=r["counts"],
                         stamp=r["stamp"], steps=r["steps"], best_step=r["best_step"], best_kid=r["best_kid"],
                         scorer=r["scorer"], quality={c: metrics[c] for c in r["classes"] if c in metrics},
                         data=data or "study data")


def gate_near_copies(pool: ImageSet, train: ImageSet, val: ImageSet, extractor: Any,
                     need: dict[str, int]) -> tuple[ImageSet, dict[str, int]]:
    """Drop pool images the memorisation audit flags as near-copies of training images, then keep the first
    ``need[c]`` survivors of each class; too few survivors stop the study with the numbers."""
    kept, res = drop_near_copies(pool, train, val, extractor=extractor, seed=0)
    idx = []
    for c, n in need.items():
        members = np.flatnonzero(kept.labels == kept.classes.index(c))
        if len(members) < n:
            raise CxraugError(f"near-copy gate: only {len(members)} of the generated {c!r} images are not "
                              f"near-copies of training images, the arms need {n}")
        idx.append(members[:n])
    return kept.subset(np.concatenate(idx)), {"generated": len(pool), "dropped": int(res["flagged"])}


def _scheduled_checkpoints(spec: GeneratorUnitSpec, work: Path, train: ImageSet, val: ImageSet, extractor: Any,
                           device: str) -> list[dict[str, Any]]:
    """KID/FID of the checkpoints kept at ``keep_steps`` (e.g. FID by epoch), per trained model folder."""
    ms = spec.metrics
    rows = []
    for ckpt in sorted(work.glob("*/checkpoints/step_*.pt")):
        gen = Generator.load(ckpt, device=device)
        step = int(ckpt.stem.split("_")[1])
        models = gen if ckpt.parent.parent.name == "model" else {gen.classes[0]: gen}
        pool = generate_synthetic(train, models, SyntheticPolicy(mode="add", n_per_class=ms.samples), seed=0)
        for c, row in image_metrics(extractor, pool, train, val, ms.samples, ms.nearest_k, None,
                                    seed=0).items():
            rows.append({"step": step, "class": c, **{k: row[k] for k in ("kid", "fid", "coverage",
                                                                           "floor_kid", "floor_fid")}})
    return rows


def curation_summary(curation: dict[str, Any], aug: ImageSet, policy: SyntheticPolicy,
                     train: ImageSet) -> dict[str, Any]:
    """What a curated arm records: kept fraction over every drawn candidate, the judge's validation accuracy,
    and the classes whose curated pool held fewer images than the arm asked for (a warning, never silent)."""
    if policy.mode == "edit":  # per label class: per_image x its sources (all sources, for a target)
        wanted = {c: int(r["needed"]) for c, r in curation["classes"].items()}
    else:
        wanted = policy_counts(policy, train.counts(), sorted(curation["classes"]))
    got = {c: int(((aug.labels == aug.classes.index(c)) & aug.synthetic).sum()) for c in wanted}
    drawn = sum(r["drawn"] for r in curation["classes"].values())
    kept = sum(r["kept"] for r in curation["classes"].values())
    return {"kept_fraction": kept / drawn if drawn else float("nan"),
            "judge_accuracy": curation["judge"]["val_accuracy"],
            "short": {c: {"wanted": wanted[c], "got": got[c]} for c in wanted if got[c] < wanted[c]}}


# ----------------------------------------------------------------------------- classifier unit
def repeat_real(train: ImageSet, counts: dict[str, int], seed: int) -> ImageSet:
    """``counts[c]`` more *real* images of each class, drawn cyclically from a seeded permutation."""
    rng = np.random.default_rng(seed)
    idx: list[np.ndarray] = []
    for c, n in counts.items():
        members = np.flatnonzero(train.labels == train.classes.index(c))
        if n == 0 or len(members) == 0:
            continue
        order = rng.permutation(members)
        idx.append(order[np.arange(n) % len(order)])
    return train.subset(np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64))


def take_from_pool(pool: ImageSet, counts: dict[str, int], size: int, allow_short: bool = False) -> ImageSet:
    """The first ``counts[c]`` pool images of each class, resized to the classifier's size (``allow_short``: a
    curated pool may hold fewer; the arm takes what there is and the unit records the shortfall)."""
    idx = []
    for c, n in counts.items():
        members = np.flatnonzero(pool.labels == pool.classes.index(c))
        if n > len(members) and not allow_short:
            raise CxraugError(f"synthetic pool has {len(members)} images of {c!r}, the arm needs {n}")
        idx.append(members[:n])
    sub = pool.subset(np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64))
    sub.images = resize_uint8(sub.images, size)
    return sub


def build_training_set(spec: ClassifierUnitSpec, train: ImageSet, pool: ImageSet | None, seed: int,
                       covered: list[str] | None = None) -> ImageSet:
    """The arm's training set: real images, plus synthetic (generator arm) or repeated real (oversample arm).
    ``covered``: the classes the generator covers (default: those in ``pool``)."""
    arm = spec.arm
    counts = train.counts()
    if arm.generator:
        assert pool is not None and arm.policy is not None
        if arm.policy.mode == "edit":
            return train.concat(take_from_pool(pool, whole_pool_counts(pool), train.size))
        covered = sorted(covered or {pool.classes[i] for i in np.unique(pool.labels)})
        return train.concat(take_from_pool(pool, policy_counts(arm.policy, counts, covered), train.size,
                                           allow_short=arm.policy.filter is not None))
    if arm.oversample:
        assert arm.policy is not None
        return train.concat(repeat_real(train, policy_counts(arm.policy, counts, list(counts)), seed))
    return train


def run_classifier_unit(spec: ClassifierUnitSpec, train: ImageSet, val: ImageSet, test: ImageSet, threads: int,
                        device: str, upstream: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one classifier on one arm's training set and evaluate it on the shared test set."""
    t0 = time.time()
    if upstream is not None and upstream.get("status", OK) != OK:
        return {"status": f"{upstream['status']} (generator)", "wall_s": 0.0,
                "failure": f"its generator unit failed: {upstream.get('failure', '')}"}
    fields = dict(spec.classifier)
    seed = int(fields.get("seed", 0))
    _prepare_process(threads, seed)
    check_no_synthetic("validation", val)
    check_no_synthetic("test", test)
    pool, covered, curation = None, None, None
    if upstream is not None:
        pool = pool_from_arrays(upstream["pool"], train.classes, train.meta)
        flt = spec.arm.policy.filter if spec.arm.policy is not None else None
        if spec.arm.policy is not None and spec.arm.policy.mode == "edit":
            pool = curated_pool(upstream["pool"], spec.arm.policy.key, train.classes, train.meta)
            if flt is not None:
                curation = upstream["curation"][spec.arm.policy.key]
        elif flt is not None:
            covered = sorted({pool.classes[i] for i in np.unique(pool.labels)})
            pool = curated_pool(upstream["pool"], flt.key, train.classes, train.meta)
            curation = upstream["curation"][flt.key]
    aug = build_training_set(spec, train, pool, seed, covered)
    # one loss weighting and one step budget for every arm; the classical policy is the arm's.
    # Loss weights come from the *real* training subset, so every arm of a regime has the same weights
    weights = False
    if spec.training.loss_weighting == "balanced":
        weights = class_weight_tensor(train.labels, len(train.classes)).tolist()
    # the step budget is counted on the real subset and shared by every arm (cxraug.study.plan.classifier_budget)
    arm = spec.arm
    fields.update(augment=arm.classical, class_weights=weights, synthetic_weight=arm.synthetic_weight,
                  synthetic_label_smoothing=arm.synthetic_label_smoothing, synthetic_schedule=arm.schedule,
                  finetune_fraction=arm.finetune_fraction, **spec.budget.model_dump())
    trained = train_classifier(aug, val, ClassifierConfig(**fields), device=device)
    sizes = {"n_train": len(aug), "n_real": int((~aug.synthetic).sum()), "n_synthetic": int(aug.synthetic.sum())}
    if curation is not None:
        sizes["curation"] = curation_summary(curation, aug, arm.policy, train)
    if trained.failure is not None:
        return {"status": NON_FINITE, "failure": trained.failure, "history": trained.history, "steps": trained.steps,
                "best_step": trained.best_step, "converged": None, **sizes, "wall_s": time.time() - t0}
    val_res = metrics_from_predictions(val.labels, trained.predict_proba(val.images, device=device), val.classes)
    prob = trained.predict_proba(test.images, device=device)
    res = metrics_from_predictions(test.labels, prob, test.classes)
    metrics = {"accuracy": res["accuracy"], "precision": res["macro_precision"], "recall": res["macro_recall"],
               "f1": res["macro_f1"], "specificity": res["macro_specificity"], "mcc": res["mcc"],
               "auc": res["macro_auc"], "weighted_f1": res["weighted_f1"]}
    return {"metrics": {k: (math.nan if v is None else float(v)) for k, v in metrics.items()},
            "confusion_matrix": res["confusion_matrix"], "y_true": test.labels.tolist(),
            "y_pred": prob.argmax(1).tolist(), "steps": trained.steps, "best_step": trained.best_step,
            "converged": trained.converged, "val_f1": float(val_res["macro_f1"]), "history": trained.history,
            "val_loss": float(trained.history[trained.best_check - 1]["val_loss"]), **sizes,
            "wall_s": time.time() - t0}
