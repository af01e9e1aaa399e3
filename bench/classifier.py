"""Classifier benchmarks; each prints one JSON object.

* ``throughput`` (default): training images/s through the real training loop on random data, custom CNN at
  64 px and ResNet-18 at 128 px (batch 32, Adam, fp32 on CPU); the first epoch (``--steps`` steps) is a warm-up,
  the second is timed. Run: ``.venv/bin/python bench/classifier.py throughput --threads 2``
* ``dev``: ResNet-18 with and without the ``fedoruk`` policy on a real dataset (patient-level 70/15/15 split,
  ``--n-per-class`` training images per class, ``--epochs`` cap with early stopping), one run per seed;
  macro-F1 and MCC on the test split, mean and sd over seeds. Run:
  ``nice .venv/bin/python bench/classifier.py dev --data ../shared/data/cxr/dev --out runs/bench_dev.json``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np
import torch

from cxraug.classifiers import ClassifierConfig, evaluate, train_classifier
from cxraug.data.imageset import ImageSet
from cxraug.device import set_threads
from cxraug.io import write_json

CASES = (("custom-cnn", 64), ("resnet18", 128))


def images_per_second(model: str, size: int, steps: int, batch_size: int, device: str) -> float:
    rng = np.random.default_rng(0)
    n = steps * batch_size
    train = ImageSet(rng.integers(0, 256, (n, size, size), dtype=np.uint8), np.arange(n) % 3, ["a", "b", "c"])
    empty = train.subset(np.zeros(0, dtype=np.int64))
    cfg = ClassifierConfig(model=model, epochs=2, max_steps=2 * steps, batch_size=batch_size, early_stopping=False)
    trained = train_classifier(train, empty, cfg, device=device)
    return steps * batch_size / trained.history[1]["seconds"]


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    return {"results": [{"model": m, "size": s, "batch_size": args.batch_size, "steps": args.steps,
                         "train_images_per_s": round(images_per_second(m, s, args.steps, args.batch_size,
                                                                       args.device), 1)} for m, s in CASES]}


def dev(args: argparse.Namespace) -> dict[str, Any]:
    from cxraug.data import PreprocessConfig, apply_regime, load_splits

    splits = load_splits(args.data, 0.15, 0.15, args.split_seed, classes=args.classes.split(","),
                         preprocess=PreprocessConfig(size=args.size), cache_dir=args.cache_dir)
    train = apply_regime(splits.train, n_per_class=args.n_per_class, seed=args.split_seed)
    out: dict[str, Any] = {"data": args.data, "size": args.size, "train": train.counts(), "val": splits.val.counts(),
                           "test": splits.test.counts(), "runs": [], "summary": {}}
    for seed in args.seeds:  # arms interleaved, so that a partial run already compares them
        for augment in (None, "fedoruk"):
            cfg = ClassifierConfig(model="resnet18", epochs=args.epochs, patience=args.patience, batch_size=32,
                                   lr=1e-3, augment=augment, seed=seed)
            start = time.perf_counter()
            trained = train_classifier(train, splits.val, cfg, device=args.device)
            m = evaluate(trained, splits.test, device=args.device)
            out["runs"].append({"augment": augment or "none", "seed": seed, "macro_f1": m["macro_f1"], "mcc": m["mcc"],
                                "accuracy": m["accuracy"], "best_epoch": trained.best_epoch,
                                "epochs_run": len(trained.history), "seconds": round(time.perf_counter() - start)})
            out["summary"] = {arm: {k: {"mean": float(np.mean([r[k] for r in runs])),
                                        "sd": float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else None}
                                    for k in ("macro_f1", "mcc", "accuracy")}
                              for arm in ("none", "fedoruk")
                              if (runs := [r for r in out["runs"] if r["augment"] == arm])}
            if args.out:
                write_json(args.out, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="throughput", choices=["throughput", "dev"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=20, help="throughput: timed steps")
    parser.add_argument("--batch-size", type=int, default=32, help="throughput: batch size")
    parser.add_argument("--data", default="../shared/data/cxr/dev", help="dev: dataset folder")
    parser.add_argument("--classes", default="COVID,Normal,Viral_Pneumonia", help="dev: classes")
    parser.add_argument("--size", type=int, default=64, help="dev: image size")
    parser.add_argument("--n-per-class", type=int, default=200, help="dev: training images per class")
    parser.add_argument("--epochs", type=int, default=40, help="dev: epoch cap")
    parser.add_argument("--patience", type=int, default=8, help="dev: early-stopping patience")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="dev: classifier seeds")
    parser.add_argument("--split-seed", type=int, default=0, help="dev: split and regime seed")
    parser.add_argument("--cache-dir", default=None, help="dev: preprocessed-image cache")
    parser.add_argument("--out", default=None, help="dev: JSON file updated after every run")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    result = throughput(args) if args.mode == "throughput" else dev(args)
    print(json.dumps({"mode": args.mode, "device": args.device, "threads": threads, "torch": torch.__version__,
                      "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), **result}))


if __name__ == "__main__":
    main()
