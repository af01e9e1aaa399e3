"""CLI commands of cxraug.generators: ``train-generator`` (a thin wrapper of
:func:`cxraug.generators.train.train_generator`), ``generate`` (PNGs plus a manifest) and ``score-checkpoints``
(image metrics of a run's checkpoints, as stylegan2-ada's ``calc_metrics.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from pydantic import ValidationError

from cxraug.augment.diffaugment import OPS as _DIFFAUGMENT
from cxraug.cliconfig import ConfigFile, given, merge_config_file
from cxraug.data.imageset import ImageSet
from cxraug.data.options import CacheDir, Clahe, Device, Devices, MaskCrop, SplitSeed, TestFrac, ValFrac
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Generator, GeneratorKind
from cxraug.generators.train import Against, Features
from cxraug.tensorboard import TensorboardOption

DIFFAUGMENT_OPS = ", ".join(_DIFFAUGMENT)


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


GeneratorName = GENERATORS.choices()


def train_generator_cmd(
    ctx: typer.Context,
    model: Optional[GeneratorName] = typer.Option(None, "--model", help="Generator (required, here or in --config)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (checkpoints/, samples/, losses.csv, "
                                       "metric-kid.jsonl, run.json, MODEL_CARD.md); required."),
    config: ConfigFile = None,
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
        None, "--diffaugment", help=f"DiffAugment operations for GANs, comma-separated: {DIFFAUGMENT_OPS}."),
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
    scorer: Features = typer.Option("domain", "--scorer", help="Best-checkpoint features (none: keep last)."),
    score_against: Against = typer.Option("train", "--score-against", help="Real images for KID (never test)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Checkpoint/KID every K."),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Sample grid every K steps."),
    keep_steps: Optional[str] = typer.Option(None, "--keep-steps", help="Also keep these steps, e.g. 500,800."),
    device: Device = "auto",
    devices: Devices = 1,
    cache_dir: CacheDir = None,
    tensorboard: TensorboardOption = None,
) -> None:
    """Train one generator on the training fold (cxraug.generators.train_generator). Examples:
    cxraug train-generator --data ../shared/data/cxr/dev --class COVID --model dcgan --size 64 --steps 2000
    --out runs/dcgan-covid --diffaugment translation,cutout,color;
    cxraug train-generator --data ../shared/data/cxr/dev --model pix2pix --source Normal --target COVID --size 64
    --out runs/pix2pix; cxraug train-generator --config dcgan.yaml --steps 500 (the file holds options such as
    model, class, data and the model's config fields; the command line wins)"""
    from cxraug.generators.train import DataOptions, train_generator

    o, fields = merge_config_file(ctx, config, aliases={"class": "cls", "set": "sets"})
    if o["model"] is None or o["out"] is None:
        raise CxraugError("train-generator needs --model and --out (on the command line or in --config)")
    named = {"seed": o["seed"], "steps": o["steps"], "epochs": o["epochs"], "batch_size": o["batch_size"],
             "lr": o["lr"], "ema_decay": o["ema"], "checkpoint_every": o["checkpoint_every"],
             "sample_every": o["sample_every"], "diffaugment": _csv_list(o["diffaugment"]),
             "keep_steps": None if o["keep_steps"] is None else [int(k) for k in _csv_list(o["keep_steps"])]}
    on_line = {k for k in named if given(ctx, "ema" if k == "ema_decay" else k)}
    # config fields, each tier overriding the last: the file's fields, named options from the file (or their
    # defaults), --set, named options on the command line
    fields.update({k: v for k, v in named.items() if v is not None and k not in on_line})
    fields.update(parse_sets(list(o["sets"])))
    fields.update({k: v for k, v in named.items() if v is not None and k in on_line})
    data_opts = DataOptions(data=o["data"], size=o["size"], clahe=o["clahe"], mask_crop=o["mask_crop"],
                            val_frac=o["val_frac"], test_frac=o["test_frac"], split_seed=o["split_seed"],
                            n_per_class=o["n_per_class"], cache_dir=o["cache_dir"])
    train_generator(o["model"], Path(o["out"]), config=fields, data=data_opts, cls=o["cls"], source=o["source"],
                    target=o["target"], scorer=o["scorer"], score_against=o["score_against"], resume=o["resume"],
                    device=o["device"], devices=o["devices"], tensorboard=o["tensorboard"])


def _csv_list(value: str | list | None) -> list | None:
    """``"a,b"`` (command line) or ``[a, b]`` (YAML) -> ``[a, b]``."""
    if value is None or isinstance(value, list):
        return value
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _training_fold(gen: Generator, root: str) -> ImageSet:
    """The training fold of the dataset at ``root``, in the generator's preprocessing."""
    from cxraug.data import PreprocessConfig, load_splits

    return load_splits(root, preprocess=PreprocessConfig(**gen.preprocess) if gen.preprocess else
                       PreprocessConfig(size=gen.config.size)).train


def _source_images(gen: Generator, source: str, target: Optional[str]) -> tuple[np.ndarray, str]:
    """Training-fold source-class images of ``source`` (a dataset root) in the generator's preprocessing."""
    from cxraug.data.names import match_class

    if gen.target_class is None:
        raise CxraugError(f"{gen.name} does not say which class it translates from")
    if target is not None and match_class(target, [gen.target_class]) != 0:
        raise CxraugError(f"{gen.name} translates into {gen.target_class!r}, not {target!r}")
    images = gen.source_images(_training_fold(gen, source))
    if images is None or len(images) == 0:
        raise CxraugError(f"no training images of the source class under {source}")
    return images, gen.target_class


def generate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Run folder (best, else last) or a .pt file."),
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Images to write (sampling; not with --edit)."),
    out: Path = typer.Option(..., "--out", help="Output folder: PNG files and manifest.csv."),
    label: Optional[str] = typer.Option(None, "--label", help="Class (conditional models; default: balanced)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: image k is sample(n, seed=seed)[k]."),
    source: Optional[str] = typer.Option(None, "--source",
                                         help="Translation models: dataset root whose training-fold source-class "
                                              "images are translated (cycled)."),
    target: Optional[str] = typer.Option(None, "--target", help="Translation models: the output class (checked)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", min=0,
                                             help="Diffusion models: classifier-free guidance scale (0 "
                                                  "unconditional, 1 conditional, > 1 guided; default: the run's)."),
    sample_steps: Optional[int] = typer.Option(None, "--sample-steps", min=1,
                                               help="Diffusion models: DDIM sampling steps (default: the run's)."),
    edit: Optional[str] = typer.Option(None, "--edit", help="Diffusion models: dataset root whose training-fold "
                                       "images are edited (SDEdit) instead of sampling."),
    strength: float = typer.Option(0.5, "--strength", min=0, max=1, help="--edit: strength s in (0, 1] (1 = free "
                                   "sampling)."),
    per_image: int = typer.Option(1, "--per-image", min=1, help="--edit: edits per source image."),
    device: Device = "auto",
) -> None:
    """Sample a trained generator into PNG files with a manifest (file, label, seed, index, model, step), or, with
    --edit, edit real training-fold images (manifest: source file, label, strength, seed, index). With --edit,
    --label edits every other class's images towards that class. Examples:
    cxraug generate --checkpoint runs/dcgan-covid --n 1000 --out runs/dcgan-covid/png;
    cxraug generate --checkpoint runs/ddpm --n 400 --guidance 2 --sample-steps 100 --out runs/ddpm/png;
    cxraug generate --checkpoint runs/ddpm --edit data/dev --strength 0.3 --per-image 2 --out runs/ddpm/edits"""
    from PIL import Image

    from cxraug import io
    from cxraug.data.names import match_class
    from cxraug.device import resolve_device
    from cxraug.ui import console, track

    gen = Generator.load(checkpoint, device=str(resolve_device(device)))
    sampling = _sampling_options(gen, guidance, sample_steps)
    if edit is not None:
        if n is not None:
            raise CxraugError("--edit writes --per-image edits of every training image: leave out --n")
        _write_edits(gen, edit, strength, per_image, label, seed, out)
        return
    if n is None:
        raise CxraugError("pass --n (images to sample) or --edit DATA_ROOT")
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
        rows.append({"file": file, "label": names[k], "seed": seed, "index": k, "model": gen.name, "step": gen.step,
                     **sampling})
    io.write_csv(out / "manifest.csv", rows, list(rows[0]))
    console.print(f"wrote {n} images of {sorted(set(names))} from {gen.name} (step {gen.step}) to {out}")


def _write_edits(gen: Generator, root: str, strength: float, per_image: int, target: str | None, seed: int,
                 out: Path) -> None:
    """``per_image`` edits of every training-fold image of ``root`` that ``gen`` knows the class of (towards
    ``target`` when given: the target's own images are left out), as PNGs with a manifest."""
    from PIL import Image

    from cxraug import io
    from cxraug.augment.edits import can_edit
    from cxraug.data.names import match_class, normalize
    from cxraug.ui import console, track

    if not can_edit(gen):
        raise CxraugError(f"--edit needs a conditional diffusion model (ddpm), not {gen.name}")
    if not 0 < strength <= 1:
        raise CxraugError(f"--strength must be in (0, 1], got {strength}")
    train = _training_fold(gen, root)
    known = [normalize(c) for c in gen.classes]
    own = np.array([known.index(normalize(train.classes[y])) if normalize(train.classes[y]) in known else -1
                    for y in train.labels])
    goal = None if target is None else match_class(target, gen.classes)
    keep = np.flatnonzero((own >= 0) & (own != (goal if goal is not None else -2)))
    if len(keep) == 0:
        raise CxraugError(f"no training images of {root} to edit into {gen.classes}")
    src = np.repeat(keep, per_image)
    labels = own[src] if goal is None else np.full(len(src), goal)
    images = gen.edit(train.images[src], labels, strength, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in track(range(len(src)), "write PNGs"):
        name = gen.classes[labels[k]]
        file = f"{gen.name}_edit_{name}_s{seed}_{k:06d}.png".replace(" ", "_")
        Image.fromarray(images[k]).save(out / file)
        rows.append({"file": file, "source": str(train.paths[src[k]]), "label": name, "strength": strength,
                     "seed": seed, "index": k, "model": gen.name, "step": gen.step,
                     "guidance_scale": gen.config.guidance_scale, "sample_steps": gen.config.sample_steps})
    io.write_csv(out / "manifest.csv", rows, list(rows[0]))
    console.print(f"wrote {len(src)} edits (strength {strength}) of {len(keep)} training images to {out}")


def _sampling_options(gen: Generator, guidance: float | None, sample_steps: int | None) -> dict[str, Any]:
    """Set a diffusion model's sampling options on ``gen`` (validated by its Config); returns those set."""
    asked = {k: v for k, v in (("guidance_scale", guidance), ("sample_steps", sample_steps)) if v is not None}
    if not asked:
        return {}
    if not set(asked) <= set(gen.Config.model_fields):
        raise CxraugError(f"--guidance and --sample-steps are for diffusion models (ddpm), not {gen.name}")
    try:
        gen.config = gen.Config(**{**gen.config.model_dump(), **asked})
    except ValidationError as exc:
        raise CxraugError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    return asked


def score_checkpoints_cmd(
    run: Path = typer.Argument(..., help="Run folder of train-generator (or one of its checkpoints/*.pt)."),
    every: bool = typer.Option(False, "--all", help="Every checkpoint in RUN/checkpoints (default: best and last)."),
    metrics: str = typer.Option("kid", "--metrics", help="Comma-separated, from: kid, fid, prdc (KID always)."),
    against: Optional[Against] = typer.Option(None, "--against",
                                              help="Real images: train or val (default: what the run used)."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (default: RUN/checkpoint_scores.csv)."),
    device: Device = "auto",
) -> None:
    """Score a generator run's checkpoints again (KID, FID, PRDC): a table and a CSV with one row per checkpoint;
    a checkpoint scored during training gets the KID recorded in metric-kid.jsonl. Example:
    cxraug score-checkpoints runs/dcgan-covid --all --metrics kid,fid,prdc --against val"""
    from rich.table import Table

    from cxraug import io
    from cxraug.device import resolve_device
    from cxraug.generators.score import score_checkpoints
    from cxraug.ui import console

    rows = score_checkpoints(run, every, tuple(_csv_list(metrics) or ["kid"]), against,
                             device=str(resolve_device(device)))
    folder = run.parent.parent if run.is_file() else run
    path = out or folder / "checkpoint_scores.csv"
    fields = list(dict.fromkeys(k for r in rows for k in r))
    io.write_csv(path, rows, fields)
    shown = [k for k in fields if "/" not in k]
    table = Table(title=f"{folder}: checkpoints against real {rows[0]['against']} images")
    for k in shown:
        table.add_column(k)
    for r in rows:
        table.add_row(*[f"{r[k]:.5g}" if isinstance(r[k], float) else str(r[k]) for k in shown])
    console.print(table)
    console.print(f"-> {path}")


def register(app: typer.Typer) -> None:
    """Add ``train-generator``, ``generate`` and ``score-checkpoints`` to the root app."""
    app.command("train-generator")(train_generator_cmd)
    app.command("generate")(generate)
    app.command("score-checkpoints")(score_checkpoints_cmd)
