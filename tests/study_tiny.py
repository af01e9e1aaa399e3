"""A tiny study on phantom data shared by the study tests (32 px, two classes, seconds per unit)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

VOLATILE = {"wall_s"}


def tiny_protocol(cache_dir: Path, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "tiny",
        "scale": "test",
        "data": {"classes": ["COVID", "Normal"], "cache_dir": str(cache_dir)},
        "preprocess": {"size": 32},
        "regimes": [{"name": "n12", "n_per_class": 12}],
        "arms": [{"name": "none"},
                 {"name": "dcgan", "generator": "dcgan", "policy": {"mode": "add", "n_per_class": 12}}],
        "generators": {"dcgan": {"model": "dcgan", "config": {
            "size": 32, "steps": 24, "batch_size": 8, "g_channels": 8, "d_channels": 8, "checkpoint_every": 6,
            "sample_every": 12, "kid_samples": 16, "log_every": 2}}},
        "classifiers": [{"name": "cnn", "model": "custom-cnn",
                         "config": {"epochs": 2, "batch_size": 8}}],
        "repeats": {"classifier_seeds": 2},
        "metrics": {"image_metrics": False, "bootstrap": 50},
        "execution": {"threads": 1, "device": "cpu"},
    }
    raw.update(overrides)
    return raw


def write_protocol(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def results_without_timing(out: Path) -> list[dict[str, str]]:
    """Unit rows of results.csv (classifiers) and generators.csv (generators, when any) minus wall-clock
    columns, sorted by unit key."""
    rows = []
    for name in ("results.csv", "generators.csv"):
        if (out / name).is_file():
            with open(out / name, newline="") as f:
                rows += [{k: v for k, v in r.items() if k not in VOLATILE} for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r["unit"])
