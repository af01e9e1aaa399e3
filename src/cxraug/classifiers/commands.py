"""``cxraug train-classifier`` and ``cxraug predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, get_args, get_origin

import typer
from pydantic import ValidationError
from rich.markup import escape

from cxraug.augment import POLICIES
from cxraug.classifiers.base import CLASSIFIERS
from cxraug.classifiers.heads import HEADS
from cxraug.classifiers.train import ClassifierConfig
from cxraug.cliconfig import ConfigFile, merge_config_file
from cxraug.data.options import CacheDir, Clahe, Device, Devices, MaskCrop, SplitSeed, TestFrac, ValFrac
from cxraug.errors import CxraugError
from cxraug.tensorboard import TensorboardOption
from cxraug.ui import console


def _option_error(err: dict, from_file: dict | None = None) -> str:
    """A pydantic error on a ClassifierConfig field, phrased with the command-line option (or, for a field set
    only by --config, with the field's name)."""
    field = str(err["loc"][0]) if err["loc"] else ""
    where = f"--config field {field}: " if field in (from_file or {}) else (
        f"--{field.replace('_', '-')}: " if field else "")
    return where + err["msg"].removeprefix("Value error, ")


def _default(name: str):
    """A ClassifierConfig default, so that the command and the Python API cannot drift apart."""
    return ClassifierConfig.model_fields[name].default


def _field(name: str):
    """The ``Literal`` of a ClassifierConfig field (``Optional`` taken off): its values become the choices."""
    annotation = ClassifierConfig.model_fields[name].annotation
    return annotation if get_origin(annotation) is Literal else get_args(annotation)[0]


def train_classifier_cmd(
    ctx: typer.Context,
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder: run.json, metrics.json, confusion.png, "
                                       "history.csv, best.pt, tb/; required (here or in --config)."),
    config: ConfigFile = None,
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder or manifest CSV (none: phantom data)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Comma-separated classes to use, in order."),
    model: CLASSIFIERS.choices() = typer.Option("resnet18", "--model", help="Classifier."),
    head: Optional[HEADS.choices()] = typer.Option(None, "--head", help="Head preset; default: the model's."),
    size: int = typer.Option(64, "--size", help="Image side in pixels (preprocessing and classifier input)."),
    clahe: Clahe = False,
    mask_crop: MaskCrop = False,
    augment: Optional[POLICIES.choices()] = typer.Option(None, "--augment", help="Classical policy on the fly."),
    pretrained: Optional[_field("pretrained")] = typer.Option(None, "--pretrained",
                                                              help="imagenet: frozen ImageNet backbone."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local torchvision-format ImageNet weights."),
    unfreeze_last_epochs: int = typer.Option(0, "--unfreeze-last-epochs",
                                             help="Then fine-tune the last block this many epochs."),
    optimizer: _field("optimizer") = typer.Option(_default("optimizer"), "--optimizer", help="Optimiser."),
    lr: float = typer.Option(_default("lr"), "--lr", help="Learning rate."),
    schedule: _field("schedule") = typer.Option(_default("schedule"), "--schedule",
                                                help="Learning-rate schedule (per validation check)."),
    epochs: Optional[int] = typer.Option(None, "--epochs",
                                         help="Budget in passes over the training images (the cap for early "
                                         "stopping). Default: automatic, 40 passes but at least 400 steps, a "
                                         "validation check every pass but at most every 10 steps."),
    batch_size: int = typer.Option(_default("batch_size"), "--batch-size", help="Batch size (per process)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every",
                                             help="Optimiser steps between validation checks (default: one pass)."),
    patience: int = typer.Option(_default("patience"), "--patience",
                                 help="Stop after this many validation checks without a better score (--monitor); "
                                 "the best check is restored (0: train the whole budget, still restoring the best)."),
    monitor: _field("monitor") = typer.Option(_default("monitor"), "--monitor",
                                help="What picks the best check and stops early: val_f1 (macro-F1, ties: lower "
                                "loss) or val_loss."),
    class_weights: bool = typer.Option(_default("class_weights"), "--class-weights/--no-class-weights",
                                       help="Weight the loss by inverse class counts (balanced)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps",
                                            help="Optimiser-step budget instead of --epochs passes."),
    n_per_class: Optional[int] = typer.Option(None, "--n-per-class", help="Training images per class (regime)."),
    val_frac: ValFrac = 0.15,
    test_frac: TestFrac = 0.15,
    split_seed: SplitSeed = 0,
    seed: int = typer.Option(0, "--seed", help="Classifier seed (initialisation, batches, augmentation)."),
    device: Device = "auto",
    devices: Devices = 1,
    cache_dir: CacheDir = None,
    tensorboard: TensorboardOption = None,
) -> None:
    """Train a classifier on a patient-level split and evaluate it on the test split.

    Defaults train to convergence: Adam 1e-3, batch 32, balanced class weights, the validation macro-F1 checked every
    pass (at most every 10 steps), early stopping after 6 checks without improvement, at most 40 passes (at least
    400 steps), the best check restored; a run still improving at its end is flagged as undertrained.
    --config FILE.yaml holds options (data, size, ...) and ClassifierConfig fields (weight_decay, gamma, ...);
    the command line overrides the file. run.json (resolved config, stamp) is written before training starts.
    Example: cxraug train-classifier --data ROOT --model resnet18 --size 128 --augment fedoruk --out runs/r18"""
    from cxraug.classifiers.evaluate import evaluate, save_confusion_png
    from cxraug.classifiers.train import train_classifier
    from cxraug.classifiers.trained import undertrained_note
    from cxraug.data import PreprocessConfig, apply_regime, load_splits
    from cxraug.data.imageset import data_fingerprint
    from cxraug.io import write_json
    from cxraug.stamp import run_record, run_stamp

    o, fields = merge_config_file(ctx, config)
    if o["out"] is None:
        raise CxraugError("train-classifier needs --out (on the command line or in --config)")
    out = Path(o["out"])
    named = {k: o[k] for k in ("model", "head", "size", "pretrained", "optimizer", "lr", "schedule", "epochs",
                               "batch_size", "class_weights", "augment", "max_steps", "seed", "eval_every", "monitor",
                               "unfreeze_last_epochs")}
    patience = o["patience"]
    named.update(weights=str(o["weights"]) if o["weights"] else None, patience=patience or _default("patience"),
                 early_stopping=patience > 0 and fields.pop("early_stopping", True))
    try:
        cfg = ClassifierConfig(**{**fields, **named})
    except ValidationError as exc:
        raise CxraugError("; ".join(_option_error(e, fields) for e in exc.errors())) from None
    data = o["data"]
    splits = load_splits(data, o["val_frac"], o["test_frac"], o["split_seed"], cache_dir=o["cache_dir"],
                         preprocess=PreprocessConfig(size=cfg.size, clahe=o["clahe"], mask_crop=o["mask_crop"]),
                         classes=o["classes"].split(",") if o["classes"] else None)
    train = (apply_regime(splits.train, n_per_class=o["n_per_class"], seed=o["split_seed"]) if o["n_per_class"]
             else splits.train)
    console.print(f"train {train.counts()}  val {splits.val.counts()}  test {splits.test.counts()}")
    from cxraug.device import resolve_device

    stamp = run_stamp(resolve_device(o["device"]), data_fingerprint(train)[:16])
    counts = {"train_counts": train.counts(), "val_counts": splits.val.counts(), "test_counts": splits.test.counts()}
    record = {"config": cfg.model_dump(mode="json"), "data": str(data) if data else "phantom",
              "options": {k: o[k] for k in ("classes", "clahe", "mask_crop", "n_per_class", "val_frac", "test_frac",
                                            "split_seed", "cache_dir", "device", "devices")}, **counts,
              "stamp": stamp}
    with run_record(out / "run.json", record):
        trained = train_classifier(train, splits.val, cfg, out_dir=out, device=o["device"], devices=o["devices"],
                                   tensorboard=o["tensorboard"])
        if trained.failure is not None:
            saved = f" ({out / 'best.pt'} holds the restored check)" if trained.best_check else ""
            raise CxraugError(f"{trained.failure}{saved}; history: {out / 'history.csv'}")
        metrics = evaluate(trained, splits.test, device=o["device"])
        summary = {"best_check": trained.best_check, "best_step": trained.best_step, "steps": trained.steps,
                   "converged": trained.converged}
        write_json(out / "metrics.json", {**metrics, "config": cfg.model_dump(mode="json"), **summary,
                                          "data": record["data"], **counts, "stamp": stamp})
        save_confusion_png(metrics, out / "confusion.png")
        record.update(summary, accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"], mcc=metrics["mcc"])
    console.print(metrics["classification_report"])
    console.print(f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  MCC {metrics['mcc']:.4f}"
                  f"  (best check at step {trained.best_step} of {trained.steps}) -> {out}")
    if trained.converged is False:
        console.print(f"[yellow]warning[/]: {undertrained_note(trained)}")


def predict_cmd(
    images: list[Path] = typer.Argument(..., help="Image/DICOM files or folders."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="best.pt written by train-classifier."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (default: print to stdout)."),
    device: Device = "auto",
) -> None:
    """Class probabilities per image, preprocessed as the classifier's training data.
    Example: cxraug predict --checkpoint runs/r18/best.pt xrays/ --out predictions.csv"""
    from cxraug.classifiers.predict import expand_paths, predict_files, write_predictions_csv
    from cxraug.classifiers.train import TrainedClassifier

    model = TrainedClassifier.load(checkpoint)
    rows = predict_files(model, expand_paths(images), device=device)
    skipped = [r for r in rows if r["error"]]
    if out is None:
        import sys

        from cxraug.io import csv_text

        sys.stdout.write(csv_text(rows, list(rows[0])))
    else:
        write_predictions_csv(rows, out)
        console.print(f"{len(rows) - len(skipped)} images predicted -> {out}")
    for r in skipped:
        console.print(f"[yellow]skipped[/] {escape(r['path'])}: {escape(r['error'])}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``train-classifier`` and ``predict`` to the root app."""
    app.command("train-classifier")(train_classifier_cmd)
    app.command("predict")(predict_cmd)
