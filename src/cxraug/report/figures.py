"""Report figures (matplotlib, Agg) and images, each returned as a ``data:image/png;base64`` URI."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any, Sequence

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_uri(fig: Figure) -> str:
    """Render and close a matplotlib figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return _uri(buf.getvalue())


def file_uri(path: Path) -> str:
    """An existing PNG file, embedded."""
    return _uri(path.read_bytes())


def strip_uri(images: np.ndarray, min_px: int = 64) -> str:
    """uint8 images (k, S, S) side by side (nearest-neighbour upscaled to at least ``min_px``), embedded."""
    scale = max(1, math.ceil(min_px / images.shape[-1]))
    tiles = [np.kron(img, np.ones((scale, scale), np.uint8)) for img in images]
    gap = np.full((tiles[0].shape[0], 2), 255, np.uint8)
    row = np.hstack([t for tile in tiles for t in (tile, gap)][:-1])
    ok, png = cv2.imencode(".png", row)
    assert ok, "PNG encoding of a uint8 image cannot fail"
    return _uri(png.tobytes())


def bar_chart(cells: dict[tuple[str, str], dict[str, float]], regimes: Sequence[str], arms: Sequence[str],
              metric: str, title: str) -> str:
    """Grouped bars: one group per regime, one bar per arm (mean), whiskers = the CI where it exists."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 0.55 * len(regimes) * len(arms)), 3.4))
    width = 0.8 / max(1, len(arms))
    for j, arm in enumerate(arms):
        xs, means, lo, hi = [], [], [], []
        for i, regime in enumerate(regimes):
            c = cells.get((regime, arm))
            if c is None or math.isnan(c["mean"]):
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            means.append(c["mean"])
            has_ci = not (math.isnan(c["ci_low"]) or math.isnan(c["ci_high"]))
            lo.append(c["mean"] - c["ci_low"] if has_ci else 0.0)
            hi.append(c["ci_high"] - c["mean"] if has_ci else 0.0)
        ax.bar(xs, means, width, yerr=[lo, hi], capsize=3, label=arm)
    ax.set_xticks(range(len(regimes)), list(regimes))
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure_uri(fig)


def confusion_figure(matrices: dict[str, np.ndarray], classes: Sequence[str], title: str) -> str:
    """One heat map per arm: rows = true class (normalised to 1), cells annotated with counts."""
    n = len(matrices)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.0 * rows), squeeze=False)
    short = [c if len(c) <= 10 else c[:9] + "." for c in classes]
    for ax, (arm, cm) in zip(axes.ravel(), matrices.items()):
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), short, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(classes)), short, fontsize=7)
        ax.set_title(arm, fontsize=9)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_uri(fig)


def _step_axes(ax: Any, ylabel: str) -> None:
    """Training step on x, ``ylabel`` on y, a light grid and a legend (none when nothing was plotted)."""
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)


def curves_figure(rows: list[dict[str, Any]], title: str) -> str:
    """Training losses by step (left) and checkpoint scores, the ``eval_*`` columns, by step (right)."""
    columns = [k for k in rows[0] if k != "step"] if rows else []
    evals = [k for k in columns if k.startswith("eval_")]
    losses = [k for k in columns if k not in evals]
    panels = [(losses, "loss")] + ([(evals, "checkpoint score")] if evals else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.0), squeeze=False)
    for ax, (keys, label) in zip(axes[0], panels):
        for key in keys:
            pts = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="." if len(pts) < 30 else None, label=key.removeprefix("eval_"))
        _step_axes(ax, label)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_uri(fig)


def checkpoint_figure(rows: list[dict[str, Any]], title: str) -> str:
    """KID and FID of kept checkpoints by step, one line per class, with the real-vs-real floor dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.0))
    for ax, metric in zip(axes, ("kid", "fid")):
        for cls in dict.fromkeys(r["class"] for r in rows):
            sel = sorted((float(r["step"]), float(r[metric]), float(r.get(f"floor_{metric}") or "nan"))
                         for r in rows if r["class"] == cls and r.get(metric) not in (None, ""))
            if not sel:
                continue
            steps, vals, floor = zip(*sel)
            line = ax.plot(steps, vals, marker=".", label=cls)[0]
            ax.plot(steps, floor, linestyle="--", color=line.get_color(), alpha=0.6)
        _step_axes(ax, metric.upper() + " (dashed: real-vs-real floor)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_uri(fig)
