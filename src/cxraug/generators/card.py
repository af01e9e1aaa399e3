"""``MODEL_CARD.md`` beside a trained generator: what it was trained on, for how long, how good its samples are
next to the real-vs-real floor, how many are near-copies of training images, and what it is (not) for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxraug import io

INTENDED_USE = ("Research on synthetic data augmentation of chest X-ray classifiers (does adding these images "
                "help, compared with classical augmentation?). Not for diagnosis, clinical decisions or as medical "
                "images of real patients; synthetic images may reproduce biases and shortcuts of the training data "
                "and may copy training images (see the memorised fraction).")


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def write_model_card(folder: str | Path, *, model: str, config: dict[str, Any], train_counts: dict[str, int],
                     stamp: dict[str, Any] | None, steps: int, best_step: int | None, best_kid: float | None,
                     scorer: dict[str, Any] | None, quality: dict[str, dict[str, float]], data: str) -> Path:
    """Write ``folder/MODEL_CARD.md``; ``quality`` is :func:`cxraug.metrics.quality.image_metrics` of the kept
    checkpoint's samples (empty when no feature extractor was used)."""
    stamp = stamp or {}
    batch = config.get("batch_size")
    n = sum(train_counts.values())
    lines = [f"# Model card: {model} generator", "",
             f"Trained by cxraug {stamp.get('cxraug', '?')} (git {stamp.get('git_commit') or '-'}) on "
             f"{stamp.get('device_name', '?')}, started {stamp.get('started', '?')}.", "",
             "## Data", "",
             f"- source: {data}" + (" (built-in phantoms: synthetic test data, not medical data)"
                                    if data == "phantom" else ""),
             f"- fingerprint: {stamp.get('data_fingerprint') or '-'}",
             f"- training images by class: {', '.join(f'{c} {k}' for c, k in train_counts.items() if k)} (patient-level "
             "training fold only; validation and test images never seen)", "",
             "## Budget", "",
             f"- {steps} optimiser steps of batch {batch} ({steps * (batch or 0) / max(n, 1):.1f} passes over the "
             f"{n} training images), image size {config.get('size')} px, seed {config.get('seed')}",
             f"- kept checkpoint: step {best_step if best_step is not None else steps} "
             f"({'lowest KID' if best_step is not None else 'last; no checkpoint was scored'})", "",
             "## Sample quality", ""]
    if scorer:
        lines.append(f"- best checkpoint KID during training: {_num(best_kid)} at step {best_step} "
                     f"({scorer.get('extractor')} features, against real {scorer.get('against')} images)")
    if quality:
        lines += ["", "Against validation images (the floor: real training images against the same validation "
                  "images; a generator cannot be expected to beat it):", "",
                  "| class | n | KID | KID floor | coverage | coverage floor | memorised fraction |",
                  "|---|---|---|---|---|---|---|"]
        for c, q in quality.items():
            lines.append(f"| {c} | {int(q['n'])} | {_num(q['kid'])} | {_num(q['floor_kid'])} | "
                         f"{_num(q['coverage'], 3)} | {_num(q['floor_coverage'], 3)} | "
                         f"{_num(q.get('memorised_fraction'), 3)} |")
    else:
        lines.append("- not measured against validation images (no feature extractor, --scorer none, or fewer than 4 "
                     "validation images of the class)")
    lines += ["", "## Intended use", "", INTENDED_USE, ""]
    path = Path(folder) / "MODEL_CARD.md"
    io.write_text(path, "\n".join(lines))
    return path
