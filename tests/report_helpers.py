"""A small study output folder in the format cxraug.study writes, for the report tests (phantom images)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from cxraug.classifiers.evaluate import confusion_batch, metrics_from_confusion
from cxraug.data.imageset import ImageSet
from cxraug.data.phantom import PHANTOM_CLASSES, draw_phantoms
from cxraug.report import save_real_samples
from cxraug.study import stats
from cxraug.study.baselines import Pairing

REGIMES = ["n20", "full"]
ARMS = {"none": "none", "classical": "classical", "dcgan": "generative"}
CLASSIFIER = "tiny-cnn"
SEEDS = (0, 1, 2)
N_TEST = 40


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _predictions(rng: np.random.Generator, accuracy: float) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.repeat(np.arange(len(PHANTOM_CLASSES)), N_TEST // len(PHANTOM_CLASSES))
    wrong = rng.random(len(y_true)) > accuracy
    y_pred = np.where(wrong, rng.integers(0, len(PHANTOM_CLASSES), len(y_true)), y_true)
    return y_true, y_pred


def _generator_unit(root: Path, key: str, regime: str) -> dict[str, Any]:
    unit = root / "units" / key
    (unit / "model").mkdir(parents=True)
    images = np.concatenate([draw_phantoms(c, 10, 32, seed=9)[0] for c in PHANTOM_CLASSES])
    labels = np.repeat(np.arange(len(PHANTOM_CLASSES)), 10)
    np.savez_compressed(unit / "pool.npz", images=images, labels=labels, paths=np.array([f"synthetic:dcgan:{i}"
                                                                                         for i in range(40)]))
    write_csv(unit / "model" / "losses.csv",
              [{"step": s, "d_loss": 1.0 / s, "g_loss": 2.0 - 1.0 / s} for s in range(1, 41)]
              + [{"step": s, "eval_kid": 0.1 / s} for s in (10, 20, 40)])
    for c in PHANTOM_CLASSES[:2]:
        cv2.imwrite(str(unit / f"memorisation_{c}.png"), np.hstack([images[0], images[1]]))
    (unit / "result.json").write_text(json.dumps({"key": key, "kind": "generator"}))
    return {"unit": key, "kind": "generator", "generator": "dcgan", "model": "dcgan", "regime": regime, "draw": 0,
            "gen_seed": 0, "kid": 0.05, "floor_kid": 0.01, "fid": 40.0, "floor_fid": 10.0, "coverage": 0.6,
            "floor_coverage": 0.9, "prdc_precision": 0.71, "prdc_recall": 0.43, "memorised_fraction": 0.0,
            "wall_s": 12.5}


def make_study_dir(root: Path, with_generator: bool = True) -> Path:
    """Write results.csv, generators.csv, generator_classes.csv, summary.csv, comparisons.csv, per-unit outputs,
    study.json, protocol.yaml."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arms = {a: r for a, r in ARMS.items() if with_generator or r != "generative"}
    rows, gen_rows, checkpoints, per_class = [], [], [], []
    for i, regime in enumerate(REGIMES):
        gen_key = f"g{i:015d}"
        if with_generator:
            gen_rows.append(_generator_unit(root, gen_key, regime))
            checkpoints += [{"unit": gen_key, "generator": "dcgan", "regime": regime, "step": s, "class": c,
                             "kid": 0.2 / s, "fid": 100.0 / s, "coverage": 0.5, "floor_kid": 0.01, "floor_fid": 5.0}
                            for s in (10, 20, 40) for c in PHANTOM_CLASSES[:2]]
            per_class += [{"unit": gen_key, "kind": "generator", "generator": "dcgan", "regime": regime,
                           "class": c, "kid": 0.05, "memorised_fraction": 0.25} for c in PHANTOM_CLASSES]
        for j, (arm, role) in enumerate(arms.items()):
            for seed in SEEDS:
                key = f"c{i}{j}{seed:014d}"
                y_true, y_pred = _predictions(rng, 0.5 + 0.1 * j + 0.1 * i)
                (root / "units" / key).mkdir(parents=True)
                (root / "units" / key / "result.json").write_text(json.dumps(
                    {"key": key, "kind": "classifier", "y_true": y_true.tolist(), "y_pred": y_pred.tolist()}))
                cm = confusion_batch(y_true, y_pred, np.arange(len(y_true))[None], len(PHANTOM_CLASSES))
                metrics = {m: float(v[0]) for m, v in metrics_from_confusion(cm).items()}
                rows.append({"unit": key, "kind": "classifier", "arm": arm, "role": role, "regime": regime,
                             "classifier": CLASSIFIER, "draw": 0, "gen_seed": 0 if role == "generative" else None,
                             "clf_seed": seed, "generator_unit": gen_key if role == "generative" else "",
                             **metrics, "wall_s": 3.0 + seed})
    names = list(stats.BOOTSTRAP_METRICS)
    write_csv(root / "results.csv", rows)
    write_csv(root / "summary.csv", stats.summarise(rows, names))
    pairs = [Pairing(regime, CLASSIFIER, arm, "none", "none", role == "generative") for regime in REGIMES
             for arm, role in arms.items() if arm != "none"]
    write_csv(root / "comparisons.csv", stats.compare(rows, pairs, names))
    if with_generator:
        write_csv(root / "generators.csv", gen_rows)
        write_csv(root / "generator_classes.csv", per_class)
        write_csv(root / "generator_checkpoints.csv", checkpoints)
    write_csv(root / "skipped.csv", [{"path": "COVID/images/broken.png", "reason": "truncated PNG"}])
    train = np.concatenate([draw_phantoms(c, 4, 32, seed=1)[0] for c in PHANTOM_CLASSES])
    save_real_samples(root, ImageSet(train, np.repeat(np.arange(4), 4), list(PHANTOM_CLASSES)))
    counts = {c: 20 for c in PHANTOM_CLASSES}
    (root / "study.json").write_text(json.dumps({
        "name": "report-fixture", "data": "phantom", "classes": PHANTOM_CLASSES, "fingerprint": "abc123",
        "train": counts, "val": counts, "test": {c: 10 for c in PHANTOM_CLASSES}, "skipped": 1,
        "patients": {"train": 80, "val": 80}, "regimes": {f"{r} draw 0": counts for r in REGIMES},
        "warnings": ["LEAKAGE: 2 near-duplicate pairs span train and test"], "cxraug": "0.1.0",
        "python": "3.11", "platform": "Linux", "executor": "local", "command": "cxraug study q.yaml",
        "wall_s": 99.0, "device": "cpu", "fairness": {
            "budget": "equal budgets: every arm makes the same number of optimiser steps", "added_arms": [
                "added arm 'oversample+fedoruk' (repeated real images)"],
            "warnings": ["baseline may be undertrained: none (n50, tiny-cnn) - 1 of 3 repeats"]}}))
    protocol = {"name": "report-fixture", "regimes": [{"name": r} for r in REGIMES],
                "arms": [{"name": a, "role": r} for a, r in arms.items()], "classifiers": [{"name": CLASSIFIER}],
                "execution": {"threads": 1, "device": "cpu"}}
    (root / "protocol.yaml").write_text(yaml.safe_dump(protocol))
    return root
