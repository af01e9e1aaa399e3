"""CLI commands of cxraug.generators: ``train-generator`` and ``generate``.

``train-generator`` loads a dataset, splits it by patient, thins the *training* fold if asked, and fits one
generator on it (unconditional models: one class), keeping the best checkpoint by KID against real training
(or validation) images of the modelled class(es) - never test images. ``generate`` writes PNGs plus a manifest.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from pydantic import ValidationError

from cxraug.data.options import CacheDir, Clahe, Device, Devices, MaskCrop, SplitSeed, TestFrac, ValFrac
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Generator, GeneratorKind, Scorer


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict; values are parsed as JSON when possible (numbers, lists, booleans)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CxraugError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


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
                 cache_dir: str | None = None) -> Scorer:
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
                       size=gen.config.size, cache_dir=cache_dir)


def _model_help() -> str:
    return "Generator: " + ", ".join(GENERATORS.names()) + "."


def train_generator(
    model: str = typer.Option(..., "--model", help=_model_help()),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints/, samples/, losses.csv, run.json)."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset root; omitted = the built-in phantom data."),
    cls: Optional[str] = typer.Option(None, "--class", help="Class to model (needed by unconditional models)."),
    source: Optional[str] = typer.Option(None, "--source", help="Translation models: input class, e.g. Normal."),
    target: Optional[str] = typer.Option(None, "--target", help="Translation models: output class, e.g. COVID."),
    size: int = typer.Option(64, "--size", help="Image size (preprocessing and generator)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Generator updates (default: the model's)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Budget in epochs instead of steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Default: the model's."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: the model's)."),
    diffaugment: Optional[str] = typer.Option(
        None, "--diffaugment", help="DiffAugment operations for GANs, e.g. translation,cutout,color."),
    ema: Optional[float] = typer.Option(None, "--ema", help="EMA decay of generator weights, e.g. 0.999."),
    sets: list[str] = typer.Option([], "--set", help="Other config fields, key=value (JSON values); repeatable."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    n_per_class: Optional[int] = typer.Option(None, "--n-per-class", help="Thin the training fold to N/class."),
    clahe: Clahe = False,
    mask_crop: MaskCrop = False,
    val_frac: ValFrac = 0.15,
    test_frac: TestFrac = 0.15,
    split_seed: SplitSeed = 0,
    seed: int = typer.Option(0, "--seed", help="Generator seed."),
    scorer: str = typer.Option("domain", "--scorer", help="Best-checkpoint features: domain, inception, none."),
    score_against: str = typer.Option("train", "--score-against", help="Real images for KID: train or val."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Checkpoint/KID every K."),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Sample grid every K steps."),
    keep_steps: Optional[str] = typer.Option(None, "--keep-steps", help="Also keep these steps, e.g. 500,800."),
    device: Device = "auto",
    devices: Devices = 1,
    cache_dir: CacheDir = None,
) -> None:
    """Train one generator on the training fold. Examples:
    cxraug train-generator --data ../shared/data/cxr/dev --class COVID --model dcgan --size 64 --steps 2000
    --out runs/dcgan-covid --diffaugment translation,cutout,color;
    cxraug train-generator --data ../shared/data/cxr/dev --model pix2pix --source Normal --target COVID --size 64
    --out runs/pix2pix"""
    from cxraug.data import PreprocessConfig, apply_regime, load_splits
    from cxraug.device import resolve_device
    from cxraug.ui import console

    gcls = GENERATORS.get(model)
    if gcls.kind is GeneratorKind.UNCONDITIONAL and cls is None:
        raise CxraugError(f"{model} models one class: pass --class (e.g. --class COVID)")
    if (source or target) and gcls.kind is not GeneratorKind.TRANSLATION:
        raise CxraugError(f"--source/--target are for translation models (e.g. pix2pix), not {model}")
    if score_against not in ("train", "val"):
        raise CxraugError(f"--score-against must be train or val (never test), got {score_against!r}")
    if (out / "checkpoints" / "last.pt").exists() and not resume:
        raise CxraugError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    prep = PreprocessConfig(size=size, clahe=clahe, mask_crop=mask_crop)
    splits = load_splits(data, val_frac, test_frac, split_seed, preprocess=prep, cache_dir=cache_dir)
    train = splits.train if n_per_class is None else apply_regime(splits.train, n_per_class, seed=split_seed)
    options: dict[str, Any] = {"size": size, "seed": seed, **parse_sets(sets)}
    named = {"steps": steps, "epochs": epochs, "batch_size": batch_size, "lr": lr, "ema_decay": ema,
             "checkpoint_every": checkpoint_every, "sample_every": sample_every, "source": source, "target": target,
             "diffaugment": None if diffaugment is None else [d.strip() for d in diffaugment.split(",") if d.strip()],
             "keep_steps": None if keep_steps is None else [int(k) for k in keep_steps.split(",") if k.strip()]}
    options.update({k: v for k, v in named.items() if v is not None})
    if gcls.kind is GeneratorKind.UNCONDITIONAL:
        from cxraug.data.names import match_class

        label = train.classes[match_class(cls, train.classes)]
        classes = [label]
        if "target_class" in gcls.Config.model_fields:
            options.setdefault("target_class", label)
    else:
        label, classes = None, list(train.classes)
    gen = build_generator(model, options, classes, dict(train.meta.get("preprocess") or prep.model_dump()),
                          str(resolve_device(device)))
    fit_set = gen.training_set(train, label)
    real = train if score_against == "train" else splits.val
    score = None if scorer == "none" else class_scorer(gen, train, real, scorer)
    console.print(f"{model}: {len(fit_set)} training images ({', '.join(f'{k} {v}' for k, v in fit_set.counts().items() if v)}), "
                  f"{gen.total_steps(len(fit_set))} steps -> {out}")
    t0 = time.time()
    res = gen.fit(fit_set, out, scorer=score, resume=resume, devices=devices)
    from cxraug import io

    io.write_json(out / "run.json", {
        "model": model, "class": label, "classes": classes, "data": data or "phantom",
        "config": gen.config.model_dump(), "preprocess": gen.preprocess, "n_train": len(fit_set),
        "train_counts": fit_set.counts(), "split": {"val_frac": val_frac, "test_frac": test_frac, "seed": split_seed,
                                                     "n_per_class": n_per_class},
        "scorer": None if score is None else {**score.describe(), "against": score_against},
        "steps": res.steps, "best_step": res.best_step, "best_kid": res.best_kid, "devices": devices,
        "wall_s": time.time() - t0})
    best = "" if res.best_kid is None else f", best KID {res.best_kid:.4g} at step {res.best_step}"
    console.print(f"{model}: {res.steps} steps in {res.wall_s / 60:.1f} min{best}; checkpoints in {out}/checkpoints")


def _source_images(gen: Generator, source: str, target: Optional[str]) -> tuple[np.ndarray, str]:
    """Training-fold source-class images of ``source`` (a dataset root) in the generator's preprocessing."""
    from cxraug.data import PreprocessConfig, load_splits
    from cxraug.data.names import match_class

    if not hasattr(gen, "source_images") or not hasattr(gen, "target_class"):
        raise CxraugError(f"{gen.name} does not say which class it translates from")
    if target is not None and match_class(target, [gen.target_class]) != 0:
        raise CxraugError(f"{gen.name} translates into {gen.target_class!r}, not {target!r}")
    splits = load_splits(source, preprocess=PreprocessConfig(**gen.preprocess) if gen.preprocess else
                         PreprocessConfig(size=gen.config.size))
    images = gen.source_images(splits.train)
    if len(images) == 0:
        raise CxraugError(f"no training images of the source class under {source}")
    return images, gen.target_class


def generate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Run folder (best, else last) or a .pt file."),
    n: int = typer.Option(..., "--n", min=1, help="Images to write."),
    out: Path = typer.Option(..., "--out", help="Output folder: PNG files and manifest.csv."),
    label: Optional[str] = typer.Option(None, "--label", help="Class (conditional models; default: balanced)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: image k is sample(n, seed=seed)[k]."),
    source: Optional[str] = typer.Option(None, "--source",
                                         help="Translation models: dataset root whose training-fold source-class "
                                              "images are translated (cycled)."),
    target: Optional[str] = typer.Option(None, "--target", help="Translation models: the output class (checked)."),
    device: Device = "auto",
) -> None:
    """Sample a trained generator into PNG files with a manifest (file, label, seed, index, model, step). Example:
    cxraug generate --checkpoint runs/dcgan-covid --n 1000 --out runs/dcgan-covid/png"""
    from PIL import Image

    from cxraug import io
    from cxraug.data.names import match_class
    from cxraug.device import resolve_device
    from cxraug.ui import console, track

    gen = Generator.load(checkpoint, device=str(resolve_device(device)))
    src = None
    if gen.kind is GeneratorKind.TRANSLATION:
        if source is None:
            raise CxraugError(f"{gen.name} translates images: pass --source DATA_ROOT (and optionally --target)")
        pool, name = _source_images(gen, source, target)
        src = pool[np.arange(n) % len(pool)]
        names = [name] * n
        images = gen.sample(n, source=src, seed=seed)
    elif gen.kind is GeneratorKind.CONDITIONAL:
        idx = np.arange(n) % len(gen.classes) if label is None else np.full(n, match_class(label, gen.classes))
        names = [gen.classes[i] for i in idx]
        images = gen.sample(n, label=idx, seed=seed)
    else:
        if label is not None:
            match_class(label, gen.classes)  # one-line error unless it names the modelled class
        names = [gen.classes[0]] * n
        images = gen.sample(n, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in track(range(n), "write PNGs"):
        file = f"{gen.name}_{names[k]}_s{seed}_{k:06d}.png".replace(" ", "_")
        Image.fromarray(images[k]).save(out / file)
        rows.append({"file": file, "label": names[k], "seed": seed, "index": k, "model": gen.name, "step": gen.step})
    with io.atomic_path(out / "manifest.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    console.print(f"wrote {n} images of {sorted(set(names))} from {gen.name} (step {gen.step}) to {out}")


def register(app: typer.Typer) -> None:
    """Add ``train-generator`` and ``generate`` to the root app."""
    app.command("train-generator")(train_generator)
    app.command("generate")(generate)
