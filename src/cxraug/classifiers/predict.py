"""Apply a trained classifier to image files with the preprocessing stored in its checkpoint.

``predict_files(model, paths)`` decodes each file (any PIL mode or DICOM), preprocesses it exactly as the
training data were (``TrainedClassifier.preprocess``; no lung mask is available here, so a mask crop is
skipped), and returns one row per file: ``path``, ``prediction``, ``p_<class>`` for every class, ``error``
(empty, or why the file was skipped).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from cxraug.classifiers.train import TrainedClassifier
from cxraug.data.decode import SUFFIXES, SkippedImage, decode_file
from cxraug.data.preprocess import PreprocessConfig, preprocess
from cxraug.errors import CxraugError
from cxraug.io import write_csv
from cxraug.ui import track


def expand_paths(items: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders expanded to the image/DICOM files under them (sorted)."""
    out: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            out.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES))
        elif item.exists():
            out.append(item)
        else:
            raise CxraugError(f"no such file or folder: {item}")
    if not out:
        raise CxraugError("no images to predict")
    return out


def preprocess_config(model: TrainedClassifier) -> PreprocessConfig:
    """The training preprocessing recorded in the checkpoint (size = the classifier's input size)."""
    return PreprocessConfig(**{**model.preprocess, "size": model.size})


def predict_files(model: TrainedClassifier, paths: list[Path], batch_size: int = 64,
                  device: str = "auto") -> list[dict[str, Any]]:
    """One row per file (see the module docstring)."""
    cfg = preprocess_config(model)
    images: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    for path in track(paths, "preprocessing"):
        decoded = decode_file(path)
        row: dict[str, Any] = {"path": str(path), "prediction": "", **{f"p_{c}": "" for c in model.classes},
                               "error": ""}
        if isinstance(decoded, SkippedImage):
            row["error"] = decoded.reason
        else:
            images.append(preprocess(decoded.pixels, cfg))
        rows.append(row)
    if images:
        prob = model.predict_proba(np.stack(images), batch_size=batch_size, device=device)
        ok = [r for r in rows if not r["error"]]
        for row, p in zip(ok, prob):
            row["prediction"] = model.classes[int(p.argmax())]
            row.update({f"p_{c}": float(p[i]) for i, c in enumerate(model.classes)})
    return rows


def write_predictions_csv(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    write_csv(path, rows, list(rows[0]))
