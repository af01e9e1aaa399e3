"""Reading a study output folder (the format is documented in :mod:`cxraug.report`)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cxraug import io
from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError

REAL_SAMPLES = "real_samples.npz"


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings; [] when the file does not exist."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(row: dict[str, Any], key: str) -> float:
    """``row[key]`` as a float; nan when absent, empty or not a number."""
    try:
        return float(row.get(key) or "nan")
    except ValueError:
        return math.nan


def _ordered(declared: list[str], seen: list[str]) -> list[str]:
    """Names in the protocol's order, then any others in order of appearance."""
    present = list(dict.fromkeys(seen))
    return [n for n in declared if n in present] + [n for n in present if n not in declared]


@dataclass
class StudyDir:
    """Everything the report reads from one study output folder."""

    root: Path
    study: dict[str, Any]
    protocol: dict[str, Any]
    results: list[dict[str, str]]  # classifier units
    generators: list[dict[str, str]]  # generator units
    summary: list[dict[str, str]]
    comparisons: list[dict[str, str]]
    ablation: list[dict[str, str]]  # ablation.csv: the recipe of each generative arm vs classical
    generator_classes: list[dict[str, str]]
    checkpoints: list[dict[str, str]]
    skipped: list[dict[str, str]]

    @classmethod
    def load(cls, root: str | Path) -> "StudyDir":
        root = Path(root)
        missing = [n for n in ("results.csv", "summary.csv") if not (root / n).is_file()]
        if missing:
            raise CxraugError(f"{root} is not a study output folder: {', '.join(missing)} missing "
                              "(run `cxraug study PROTOCOL --out DIR` first)")
        results = read_csv(root / "results.csv")
        if any(r.get("kind") == "generator" for r in results):
            raise CxraugError(f"{root} was written by an older cxraug (generator rows in results.csv, in generators.csv "
                              f"now): re-run `cxraug study PROTOCOL --out {root}`, which reuses its finished units "
                              "and rewrites the outputs")
        study = json.loads((root / "study.json").read_text()) if (root / "study.json").is_file() else {}
        proto_path = root / "protocol.yaml"
        protocol = (yaml.safe_load(proto_path.read_text()) or {}) if proto_path.is_file() else {}
        return cls(root=root, study=study, protocol=protocol, results=results,
                   generators=read_csv(root / "generators.csv"),
                   summary=read_csv(root / "summary.csv"), comparisons=read_csv(root / "comparisons.csv"),
                   ablation=read_csv(root / "ablation.csv"),
                   generator_classes=read_csv(root / "generator_classes.csv"),
                   checkpoints=read_csv(root / "generator_checkpoints.csv"), skipped=read_csv(root / "skipped.csv"))

    def _declared(self, key: str) -> list[str]:
        return [str(item["name"]) for item in self.protocol.get(key) or [] if isinstance(item, dict)]

    @property
    def regimes(self) -> list[str]:
        return _ordered(self._declared("regimes"), [r["regime"] for r in self.summary])

    @property
    def arms(self) -> list[str]:
        return _ordered(self._declared("arms"), [r["arm"] for r in self.summary])

    @property
    def classifiers(self) -> list[str]:
        return _ordered(self._declared("classifiers"), [r["classifier"] for r in self.summary])

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(r["metric"] for r in self.summary))

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.study.get("classes") or []]

    def units(self, kind: str) -> list[dict[str, str]]:
        """The rows of the ``"classifier"`` (results.csv) or ``"generator"`` (generators.csv) units."""
        return self.generators if kind == "generator" else self.results

    def unit_dir(self, key: str) -> Path:
        return self.root / "units" / key

    def unit_result(self, key: str) -> dict[str, Any]:
        path = self.unit_dir(key) / "result.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def pool(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(images, labels) of a generator unit's synthetic pool, or None when it was not kept."""
        path = self.unit_dir(key) / "pool.npz"
        if not path.is_file():
            return None
        with np.load(path) as z:
            return z["images"], z["labels"]

    def pool_arrays(self, key: str) -> dict[str, np.ndarray]:
        """Every array of a generator unit's ``pool.npz`` (curated pools included); empty when not kept."""
        path = self.unit_dir(key) / "pool.npz"
        if not path.is_file():
            return {}
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def real_samples(self) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
        """(images, labels, classes) saved by :func:`cxraug.report.save_real_samples`, or None."""
        path = self.root / REAL_SAMPLES
        if not path.is_file():
            return None
        with np.load(path) as z:
            return z["images"], z["labels"], [str(c) for c in z["classes"]]


def save_real_samples(out: str | Path, images: ImageSet, n_per_class: int = 8, seed: int = 0) -> Path:
    """Keep ``n_per_class`` real images per class (a seeded draw) as ``OUT/real_samples.npz`` for the report's
    real-vs-synthetic grids. Call it with training images only (never test)."""
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(images.labels == k))[:n_per_class] for k in range(len(images.classes))]
    pick = np.sort(np.concatenate(idx)) if idx else np.zeros(0, np.int64)
    path = Path(out) / REAL_SAMPLES
    with io.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images.images[pick], labels=images.labels[pick],
                                classes=np.asarray(images.classes, dtype=str))
    return path
