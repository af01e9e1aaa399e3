"""``train_generator(model, out, ...)``: what ``cxraug train-generator`` does, as a Python function.

It loads a dataset (None: the phantoms), splits it by patient, thins the *training* fold if asked, and fits one
generator on it (unconditional models: one class), keeping the best checkpoint by KID against real training (or
validation) images of the modelled class(es) - never test images. The run folder gets ``run.json`` *before*
training starts (``status: running``, the resolved config, the options, the stamp) and again at the end
(``finished`` with steps and best KID, or ``failed``/``interrupted`` with the error), ``losses.csv``,
``metric-kid.jsonl``, sample grids, checkpoints, TensorBoard events and ``MODEL_CARD.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import FitResult, Generator, GeneratorKind, Scorer

Features = Literal["domain", "inception", "none"]
Against = Literal["train", "val"]


class DataOptions(BaseModel):
    """Where a generator's training images come from (kept in ``run.json`` so that a run can be re-scored)."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(None, description="dataset root; None = the built-in phantoms")
    size: int = 64
    clahe: bool = False
    mask_crop: bool = False
    val_frac: float = 0.15
    test_frac: float = 0.15
    split_seed: int = 0
    n_per_class: int | None = None
    cache_dir: str | None = None

    def load(self) -> tuple[ImageSet, ImageSet]:
        """(training fold, thinned to ``n_per_class`` when set; validation fold)."""
        from cxraug.data import PreprocessConfig, apply_regime, load_splits

        prep = PreprocessConfig(size=self.size, clahe=self.clahe, mask_crop=self.mask_crop)
        splits = load_splits(self.data, self.val_frac, self.test_frac, self.split_seed, preprocess=prep,
                             cache_dir=self.cache_dir)
        splits.train.meta.setdefault("preprocess", prep.model_dump())
        train = splits.train if self.n_per_class is None else apply_regime(splits.train, self.n_per_class,
                                                                           seed=self.split_seed)
        return train, splits.val


@dataclass
class GeneratorRun:
    """A finished ``train_generator`` call: the trained generator (final state), its fit result, ``run.json``."""

    generator: Generator
    result: FitResult
    record: dict[str, Any]
    out: Path


def build_generator(model: str, options: dict[str, Any], classes: list[str], preprocess: dict,
                    device: str = "cpu") -> Generator:
    """Instantiate a registered generator; invalid or unknown config fields become one-line errors."""
    cls = GENERATORS.get(model)
    try:
        config = cls.Config(**options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise CxraugError(f"{model}: invalid configuration ({problems})") from None
    return cls(config, classes=classes, device=device, preprocess=preprocess)


def class_scorer(gen: Generator, train_fold: Any, real: Any, features: str = "domain",
                 cache_dir: str | None = None, metric: str = "kid") -> Scorer:
    """KID scorer against ``real`` (training or validation images, never test) of the classes ``gen`` models.

    Unconditional models are scored against their class only, conditional and translation models per class
    (labels in ``train_fold``'s class order). ``features="domain"`` trains (or reuses, by hash) the domain
    encoder on ``train_fold``: every class of the (regime-thinned) training fold.
    """
    from cxraug.data.names import match_class
    from cxraug.metrics.scorer import make_scorer

    if gen.kind is GeneratorKind.UNCONDITIONAL:
        real = real.of_class(real.classes[match_class(gen.classes[0], real.classes)])
        labels = None
    else:
        labels = real.labels
    if len(real) < 2:
        raise CxraugError(f"the KID scorer needs at least 2 real images of {gen.classes}, got {len(real)}")
    return make_scorer(real.images, labels, features, train=train_fold if features == "domain" else None,
                       size=gen.config.size, cache_dir=cache_dir, metric=metric)


def modelled(model: str, train: ImageSet, cls: str | None) -> tuple[str | None, list[str]]:
    """(the modelled class ``cls`` of an unconditional model, else None; the generator's classes)."""
    from cxraug.data.names import match_class

    if GENERATORS.get(model).kind is GeneratorKind.UNCONDITIONAL:
        label = train.classes[match_class(str(cls), train.classes)]
        return label, [label]
    return None, list(train.classes)


def train_generator(model: str, out: str | Path, *, config: dict[str, Any] | None = None,
                    data: DataOptions | None = None, cls: str | None = None, source: str | None = None,
                    target: str | None = None, scorer: Features = "domain", score_against: Against = "train",
                    resume: bool = False, device: str = "auto", devices: int = 1,
                    tensorboard: bool | None = None, progress: bool = True) -> GeneratorRun:
    """Train one generator (module docstring). ``config``: the model's Config fields (``size`` defaults to the
    data's); ``cls``: the class of an unconditional model; ``source``/``target``: a translation model's
    classes; ``scorer``: features of the best-checkpoint KID (``none``: keep the last checkpoint only)."""
    from cxraug.device import resolve_device
    from cxraug.data.imageset import data_fingerprint
    from cxraug.stamp import run_record, run_stamp
    from cxraug.ui import console

    out = Path(out)
    data = data or DataOptions()
    gcls = GENERATORS.get(model)
    if (source or target) and gcls.kind is not GeneratorKind.TRANSLATION:
        raise CxraugError(f"--source/--target are for translation models (e.g. pix2pix), not {model}")
    if score_against not in ("train", "val"):
        raise CxraugError(f"--score-against must be train or val (never test), got {score_against!r}")
    if gcls.kind is GeneratorKind.UNCONDITIONAL and cls is None:
        raise CxraugError(f"{model} models one class: pass --class (e.g. --class COVID)")
    if (out / "checkpoints" / "last.pt").exists() and not resume:
        raise CxraugError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    train, val = data.load()
    label, classes = modelled(model, train, cls)
    options: dict[str, Any] = {"size": data.size, **(config or {}),
                               **{k: v for k, v in (("source", source), ("target", target)) if v is not None}}
    if label is not None and "target_class" in gcls.Config.model_fields:
        options.setdefault("target_class", label)
    dev = resolve_device(device)
    gen = build_generator(model, options, classes, dict(train.meta.get("preprocess") or {}), str(dev))
    fit_set = gen.training_set(train, label)
    real = train if score_against == "train" else val
    score = None if scorer == "none" else class_scorer(gen, train, real, scorer)
    stamp = run_stamp(dev, data_fingerprint(fit_set)[:16])
    total = gen.total_steps(len(fit_set))
    record: dict[str, Any] = {
        "model": model, "class": label, "classes": classes, "data": data.data or "phantom",
        "config": gen.config.model_dump(), "preprocess": gen.preprocess, "n_train": len(fit_set),
        "train_counts": fit_set.counts(), "split": {"val_frac": data.val_frac, "test_frac": data.test_frac,
                                                    "seed": data.split_seed, "n_per_class": data.n_per_class},
        "options": {"data": data.model_dump(), "cls": cls, "scorer": scorer, "score_against": score_against},
        "scorer": None if score is None else {**score.describe(), "against": score_against},
        "total_steps": total, "devices": devices, "stamp": stamp}
    console.print(f"{model}: {len(fit_set)} training images ({', '.join(f'{k} {v}' for k, v in fit_set.counts().items() if v)}), "
                  f"{total} steps -> {out}")
    from cxraug.generators.card import write_model_card

    with run_record(out / "run.json", record):
        res = gen.fit(fit_set, out, scorer=score, resume=resume, progress=progress, devices=devices,
                      tensorboard=tensorboard, stamp=stamp)
        quality = _quality(out, gen, fit_set, train, val, score)
        record.update(steps=res.steps, best_step=res.best_step, best_kid=res.best_kid, quality=quality)
        write_model_card(out, model=model, config=gen.config.model_dump(), train_counts=fit_set.counts(),
                         stamp=stamp, steps=res.steps, best_step=res.best_step, best_kid=res.best_kid,
                         scorer=record["scorer"], quality=quality, data=record["data"])
    best = "" if res.best_kid is None else f", best KID {res.best_kid:.4g} at step {res.best_step}"
    if res.stopped_early:
        best += f" (stopped early: no better KID for {gen.config.patience} checkpoints)"
    console.print(f"{model}: {res.steps} steps in {res.wall_s / 60:.1f} min{best}; checkpoints in {out}/checkpoints")
    return GeneratorRun(generator=gen, result=res, record=record, out=out)


def _quality(out: Path, gen: Generator, fit_set: ImageSet, train: ImageSet, val: ImageSet,
             score: Scorer | None) -> dict[str, dict[str, float]]:
    """Image metrics of the kept checkpoint's samples against validation images, with the floor and the
    memorisation audit (gallery PNGs in ``out``); empty without a feature extractor."""
    if score is None:
        return {}
    from cxraug.metrics.quality import image_metrics

    kept = Generator.load(out, device=gen.device)
    images, labels = kept.eval_samples(kept.config.kid_samples, fit_set)
    if labels is None:
        labels = np.full(len(images), train.classes.index(kept.classes[0]))
    fake = ImageSet(images=images, labels=np.asarray(labels, dtype=np.int64), classes=list(train.classes),
                    paths=[f"synthetic:{kept.name}:{i}" for i in range(len(images))],
                    synthetic=np.ones(len(images), dtype=bool))
    return image_metrics(score.extractor, fake, train, val, kept.config.kid_samples, 5, out, seed=0)
