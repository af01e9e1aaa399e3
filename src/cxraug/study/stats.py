"""Statistics over repeated runs: what varies is named beside every interval.

* :func:`summarise` - per arm, regime and classifier: mean, sd and a t-interval over repeats.
* :func:`compare` - paired differences against baseline arms (same regime, classifier, subset draw and
  classifier seed): mean difference, t-interval, paired t-test, Holm-corrected per metric over every
  comparison reported.
* :func:`bootstrap_test` - a second variance component: resampling the test images (the same resamples for
  every unit, so paired), holding the trained models fixed (the metrics of each resample's confusion matrix
  come from :mod:`cxraug.classifiers.evaluate`, the home of the classification metrics).

Inputs are plain rows (dicts): ``arm``, ``regime``, ``classifier``, ``draw``, ``gen_seed``, ``clf_seed`` and one
value per metric.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy import stats as sps

from cxraug.classifiers.evaluate import CONFUSION_METRICS, confusion_batch, metrics_from_confusion

#: randomness sources of a classifier result, as (row key, label)
SOURCES = (("clf_seed", "classifier seed"), ("draw", "training-subset draw"), ("gen_seed", "generator seed"))


def mean_of_finite(values: Iterable[float | None]) -> float:
    """Mean of the values that are set and not NaN (NaN when none is)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else math.nan


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample sd and the two-sided t-interval of the mean (nan bounds when fewer than 2 values)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(x.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def paired_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Difference ``a - b`` of paired values: t-interval of the mean difference and the paired t-test."""
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = t_interval(list(a_ - b_), confidence)
    if len(a_) >= 2 and np.any(a_ != b_):
        res = sps.ttest_rel(a_, b_)
        out.update(t=float(res.statistic), p=float(res.pvalue))
    else:
        out.update(t=math.nan, p=math.nan)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); nan stays nan."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def covers(rows: Iterable[dict[str, Any]]) -> str:
    """Which randomness sources the rows vary over, e.g. ``classifier seed x3; training-subset draw x2``."""
    rows = list(rows)
    parts = []
    for key, label in SOURCES:
        values = {r.get(key) for r in rows if r.get(key) is not None}
        if values:
            parts.append(f"{label} x{len(values)}" + ("" if len(values) > 1 else " (fixed)"))
    return "; ".join(parts)


_GROUP = ("regime", "classifier", "arm")


def summarise(rows: list[dict[str, Any]], metrics: Sequence[str], confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per (regime, classifier, arm, metric): n, mean, sd, t-interval and the sources it covers."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in _GROUP)].append(r)
    out = []
    for key, grp in groups.items():
        for m in metrics:
            s = t_interval([float(r[m]) for r in grp if m in r], confidence)
            out.append({**dict(zip(_GROUP, key)), "metric": m, **s, "confidence": confidence,
                        "covers": covers(grp)})
    return out


def _pair_values(rows: list[dict[str, Any]], metric: str) -> dict[tuple, float]:
    """(draw, clf_seed) -> metric, averaged over generator seeds."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        acc[(r["draw"], r["clf_seed"])].append(float(r[metric]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def compare(rows: list[dict[str, Any]], pairings: Sequence[Any], metrics: Sequence[str],
            confidence: float = 0.95) -> list[dict[str, Any]]:
    """Paired differences ``arm - baseline`` for each pairing (``regime``, ``classifier``, ``arm``, ``baseline``,
    ``role``, ``strongest`` attributes, e.g. :class:`cxraug.study.baselines.Pairing`).

    Pairs share regime, classifier, subset draw and classifier seed; an arm with several generator seeds
    contributes their mean to each pair. p-values are Holm-adjusted per metric over all comparisons returned.
    """
    by: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[tuple(r[k] for k in _GROUP)].append(r)
    out = []
    for pg in pairings:
        grp, base_rows = by.get((pg.regime, pg.classifier, pg.arm)), by.get((pg.regime, pg.classifier, pg.baseline))
        if not grp or not base_rows:
            continue
        for m in metrics:
            a, b = _pair_values(grp, m), _pair_values(base_rows, m)
            keys = sorted(set(a) & set(b))
            if not keys:
                continue
            res = paired_test([a[k] for k in keys], [b[k] for k in keys], confidence)
            src = covers([r for r in grp if (r["draw"], r["clf_seed"]) in keys])
            gens = {r.get("gen_seed") for r in grp} - {None}
            if len(gens) > 1:
                src = src.replace(f"generator seed x{len(gens)}",
                                  f"generator seed x{len(gens)} (averaged within each pair)")
            out.append({"regime": pg.regime, "classifier": pg.classifier, "arm": pg.arm, "baseline": pg.baseline,
                        "baseline_role": pg.role, "strongest_baseline": pg.strongest, "metric": m, **res,
                        "confidence": confidence, "covers": src})
    for m in metrics:
        sel = [r for r in out if r["metric"] == m]
        for r, p in zip(sel, holm([r["p"] for r in sel])):
            r["p_holm"] = p
    return out


# ----------------------------------------------------------------------------- test-image bootstrap
#: the metrics the test-image bootstrap resamples (those of a confusion matrix)
BOOTSTRAP_METRICS = CONFUSION_METRICS


def bootstrap_test(units: dict[str, tuple[np.ndarray, np.ndarray]], groups: dict[tuple, list[str]],
                   pairs: list[tuple[tuple, tuple]], n_classes: int, resamples: int, seed: int = 0,
                   confidence: float = 0.95,
                   metric_fn: Callable[[np.ndarray], dict[str, np.ndarray]] = metrics_from_confusion,
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Percentile intervals over test-image resamples.

    ``units``: unit id -> (y_true, y_pred) on the shared test set. ``groups``: group key -> unit ids (the
    repeats of one arm); the group's value in a resample is the mean over its units. ``pairs``: (group,
    baseline group) whose difference is bootstrapped with the same resamples. Returns (per-group rows,
    per-pair rows), each with ``metric``, ``boot_low``, ``boot_high`` and ``boot_sd``.
    """
    if resamples <= 0 or not units:
        return [], []
    n = len(next(iter(units.values()))[0])
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(resamples, n))
    per_unit = {u: metric_fn(confusion_batch(yt, yp, index, n_classes)) for u, (yt, yp) in units.items()}
    metrics = list(next(iter(per_unit.values())))
    alpha = (1 - confidence) / 2

    def dist(key: tuple, m: str) -> np.ndarray:
        return np.mean([per_unit[u][m] for u in groups[key]], axis=0)

    def row(values: np.ndarray) -> dict[str, float]:
        lo, hi = np.quantile(values, [alpha, 1 - alpha])
        return {"boot_low": float(lo), "boot_high": float(hi), "boot_sd": float(values.std(ddof=1))}

    group_rows = [{"group": key, "metric": m, **row(dist(key, m))} for key in groups for m in metrics]
    pair_rows = [{"group": a, "baseline_group": b, "metric": m, **row(dist(a, m) - dist(b, m))}
                 for a, b in pairs for m in metrics]
    return group_rows, pair_rows
