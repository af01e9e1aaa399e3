"""Build ``OUT/report.html`` from a study output folder (one self-contained file: every image embedded)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from cxraug import __version__, faults, io
from cxraug.report import figures
from cxraug.report.study_dir import StudyDir, num, read_csv

BAR_METRICS = ("f1", "accuracy", "mcc")
GEN_COLUMNS = ("kid", "floor_kid", "fid", "floor_fid", "coverage", "floor_coverage", "prdc_precision",
               "prdc_recall", "memorised_fraction", "wall_s")
SAMPLES_PER_CLASS = 8
VERSIONED = ("torch", "torchvision", "numpy", "scipy", "lightning-fabric", "torch-fidelity", "scikit-learn", "ray")


def _f(value: float, digits: int = 3) -> str:
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def _ci(row: dict[str, Any], lo: str = "ci_low", hi: str = "ci_high") -> str:
    a, b = num(row, lo), num(row, hi)
    return "" if math.isnan(a) or math.isnan(b) else f"[{a:.3f}, {b:.3f}]"


def summary_tables(sd: StudyDir) -> list[dict[str, Any]]:
    """Per regime and classifier: one row per arm, one cell per metric (mean, t-interval, bootstrap)."""
    idx = {(r["regime"], r["classifier"], r["arm"], r["metric"]): r for r in sd.summary}
    roles = {r["arm"]: r.get("role", "") for r in sd.units("classifier")}
    tables = []
    for regime in sd.regimes:
        for clf in sd.classifiers:
            rows = []
            for arm in sd.arms:
                cells = [idx.get((regime, clf, arm, m)) for m in sd.metrics]
                if not any(cells):
                    continue
                rows.append({"arm": arm, "role": roles.get(arm, ""), "cells": [
                    {"metric": m, "mean": _f(num(c, "mean")) if c else "", "ci": _ci(c) if c else "",
                     "boot": _ci(c, "boot_low", "boot_high") if c else "", "n": c.get("n", "") if c else ""}
                    for m, c in zip(sd.metrics, cells)]})
            if rows:
                first = next(r for r in sd.summary if r["regime"] == regime and r["classifier"] == clf)
                tables.append({"regime": regime, "classifier": clf, "rows": rows, "covers": first.get("covers", ""),
                               "confidence": first.get("confidence", "")})
    return tables


def comparison_rows(sd: StudyDir) -> list[dict[str, str]]:
    """Paired differences against the baselines for the headline metrics, in protocol order, formatted."""
    def order(c: dict[str, str]) -> tuple[int, ...]:
        return (_rank(sd.regimes, c["regime"]), _rank(sd.classifiers, c["classifier"]), _rank(sd.arms, c["arm"]),
                _rank(sd.arms, c["baseline"]), _rank(list(BAR_METRICS), c["metric"]))

    return [{"regime": c["regime"], "classifier": c["classifier"], "arm": c["arm"], "baseline": c["baseline"],
             "role": c.get("baseline_role", ""), "metric": c["metric"],
             "mean": f"{num(c, 'mean'):+.3f}" if not math.isnan(num(c, "mean")) else "",
             "ci": _ci(c), "p_holm": _f(num(c, "p_holm"), 4), "boot": _ci(c, "boot_low", "boot_high"),
             "covers": c.get("covers", "")}
            for c in sorted((c for c in sd.comparisons if c["metric"] in BAR_METRICS), key=order)]


def ablation_rows(sd: StudyDir) -> list[dict[str, str]]:
    """The recipe-ablation rows (``ablation.csv``), differences formatted as ``+0.012 [-0.010, +0.034]``."""
    def diff(r: dict[str, str], m: str) -> str:
        mean = num(r, f"{m}_vs_classical")
        return "" if math.isnan(mean) else f"{mean:+.3f} [{num(r, f'{m}_low'):+.3f}, {num(r, f'{m}_high'):+.3f}]"

    return [{**{k: r.get(k, "") for k in ("regime", "classifier", "arm", "generator", "mode", "filter", "weight",
                                          "schedule", "classical")},
             "f1": diff(r, "f1"), "f1_p": _f(num(r, "f1_p_holm"), 4), "mcc": diff(r, "mcc"),
             "mcc_p": _f(num(r, "mcc_p_holm"), 4), "val_f1": _f(num(r, "val_f1")),
             "chosen": r.get("chosen") == "True"} for r in sd.ablation]


def headline(sd: StudyDir) -> list[dict[str, str]]:
    """Macro-F1 paired difference of each generative arm against the strongest non-generative arm of its regime
    and classifier (chosen by validation macro-F1), with the baseline's own mean."""
    means = {(r["regime"], r["classifier"], r["arm"]): num(r, "mean") for r in sd.summary if r["metric"] == "f1"}
    rows = []
    for c in sd.comparisons:
        if c.get("strongest_baseline") != "True" or c["metric"] != "f1":
            continue
        arm_mean, base_mean = means.get((c["regime"], c["classifier"], c["arm"]), math.nan), \
            means.get((c["regime"], c["classifier"], c["baseline"]), math.nan)
        rows.append({"regime": c["regime"], "classifier": c["classifier"], "arm": c["arm"],
                     "baseline": c["baseline"], "arm_mean": _f(arm_mean), "baseline_mean": _f(base_mean),
                     "mean": f"{num(c, 'mean'):+.3f}" if not math.isnan(num(c, "mean")) else "", "ci": _ci(c),
                     "p_holm": _f(num(c, "p_holm"), 4), "n": c.get("n", "")})
    order = {(r, c, a): i for i, (r, c, a) in enumerate((r, c, a) for r in sd.regimes for c in sd.classifiers
                                                         for a in sd.arms)}
    return sorted(rows, key=lambda r: order.get((r["regime"], r["classifier"], r["arm"]), len(order)))


def _rank(names: list[str], name: str) -> int:
    return names.index(name) if name in names else len(names)


def bar_charts(sd: StudyDir) -> list[dict[str, str]]:
    """One chart per classifier and headline metric: bars per arm and regime with CI whiskers."""
    out = []
    for clf in sd.classifiers:
        for metric in [m for m in BAR_METRICS if m in sd.metrics]:
            cells = {(r["regime"], r["arm"]): {k: num(r, k) for k in ("mean", "ci_low", "ci_high")}
                     for r in sd.summary if r["classifier"] == clf and r["metric"] == metric}
            title = f"{metric} by arm and regime ({clf})"
            out.append({"title": title, "uri": figures.bar_chart(cells, sd.regimes, sd.arms, metric, title)})
    return out


def confusion_matrices(sd: StudyDir) -> list[dict[str, str]]:
    """Per regime and classifier: each arm's confusion matrix summed over its repeats."""
    k = len(sd.classes)
    sums: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(dict)
    for row in sd.units("classifier"):
        res = sd.unit_result(row["unit"])
        if not k or "y_true" not in res:
            continue
        cm = np.bincount(np.asarray(res["y_true"]) * k + np.asarray(res["y_pred"]), minlength=k * k).reshape(k, k)
        group = sums[(row["regime"], row["classifier"])]
        group[row["arm"]] = group.get(row["arm"], 0) + cm
    out = []
    for regime in sd.regimes:
        for clf in sd.classifiers:
            group = sums.get((regime, clf))
            if group:
                ordered = {a: group[a] for a in sd.arms if a in group}
                title = f"Confusion matrices, {regime} / {clf} (test set, summed over repeats)"
                out.append({"title": title, "uri": figures.confusion_figure(ordered, sd.classes, title)})
    return out


def _representatives(sd: StudyDir) -> list[dict[str, str]]:
    """The first unit (lowest draw and generator seed) of each generator x regime."""
    chosen: dict[tuple[str, str], dict[str, str]] = {}
    for row in sorted(sd.units("generator"), key=lambda r: (num(r, "draw"), num(r, "gen_seed"))):
        chosen.setdefault((row["generator"], row["regime"]), row)
    return list(chosen.values())


def generator_sections(sd: StudyDir) -> list[dict[str, Any]]:
    """Per generator x regime: real-vs-synthetic samples per class, loss and KID/FID curves, memorisation."""
    real = sd.real_samples()
    memorised = {(r["unit"], r["class"]): r for r in sd.generator_classes}
    out = []
    for row in _representatives(sd):
        key = row["unit"]
        name = f"{row['generator']} ({row.get('model', '')}) | {row['regime']}"
        samples = []
        pool = sd.pool(key)
        for ci, cls in enumerate(sd.classes):
            fake = pool[0][pool[1] == ci][:SAMPLES_PER_CLASS] if pool is not None else np.zeros((0,))
            if not len(fake):
                continue
            real_uri = None
            if real is not None and cls in real[2]:
                imgs = real[0][real[1] == real[2].index(cls)][:SAMPLES_PER_CLASS]
                real_uri = figures.strip_uri(imgs) if len(imgs) else None
            samples.append({"cls": cls, "real": real_uri, "fake": figures.strip_uri(fake)})
        curves = [{"title": f"{name}: {p.parent.name}", "uri": figures.curves_figure(
                   read_csv(p) + _score_rows(p.parent), f"{name}: {p.parent.name} training")}
                  for p in sorted(sd.unit_dir(key).glob("*/losses.csv"))]
        ckpt = [r for r in sd.checkpoints if r.get("unit") == key]
        gallery = [{"cls": p.stem.removeprefix("memorisation_"), "uri": figures.file_uri(p),
                    "fraction": _f(num(memorised.get((key, p.stem.removeprefix("memorisation_")), {}),
                                       "memorised_fraction"))}
                   for p in sorted(sd.unit_dir(key).glob("memorisation_*.png"))]
        out.append({"name": name, "unit": key, "draw": row.get("draw", ""), "gen_seed": row.get("gen_seed", ""),
                    "samples": samples, "real_missing": real is None, "curves": curves,
                    "checkpoints": figures.checkpoint_figure(ckpt, f"{name}: KID / FID of kept checkpoints")
                    if ckpt else None, "gallery": gallery, "curation": curation_blocks(sd, key),
                    "edits": edit_blocks(sd, key)})
    return out


def _strips(sd: StudyDir, arrays: dict[str, np.ndarray], key: str, cls: str,
            kinds: tuple[str, ...]) -> list[str | None]:
    """A strip of class ``cls``'s first images of each pool array group ``<key>__<kind>`` (None where empty)."""
    ci = sd.classes.index(cls) if cls in sd.classes else -1
    out = []
    for kind in kinds:
        images, labels = arrays.get(f"{key}__{kind}images"), arrays.get(f"{key}__{kind}labels")
        shown = images[labels == ci][:SAMPLES_PER_CLASS] if images is not None else np.zeros((0,))
        out.append(figures.strip_uri(shown) if len(shown) else None)
    return out


def curation_blocks(sd: StudyDir, key: str) -> list[dict[str, Any]]:
    """Per filter of a generator unit: the kept-fraction table per class and a few kept vs rejected samples."""
    arrays = sd.pool_arrays(key)
    out = []
    for fkey, cur in sd.unit_result(key).get("curation", {}).items():
        rows, strips = [], []
        for cls, rec in cur["classes"].items():
            rows.append({"cls": cls, "drawn": rec["drawn"], "kept": rec["kept"], "needed": rec["needed"],
                         "fraction": _f(float(rec["kept_fraction"])), "short": rec["short"],
                         "rejected": ", ".join(f"{k.removeprefix('rejected_')} {v}" for k, v in rec.items()
                                               if k.startswith("rejected_"))})
            kept, rejected = _strips(sd, arrays, fkey, cls, ("", "rejected_"))
            strips.append({"cls": cls, "kept": kept, "rejected": rejected})
        f = cur["filter"]
        what = ", ".join(x for x in (f"confidence >= {f['confidence']}" if f["confidence"] is not None else "",
                                     f"realism k={f['realism']}" if f["realism"] is not None else "",
                                     "diversity" if f["diversity"] else "") if x)
        out.append({"key": fkey, "what": what, "judge": _f(float(cur["judge"]["val_accuracy"])),
                    "rows": rows, "strips": strips})
    return out


def edit_blocks(sd: StudyDir, key: str) -> list[dict[str, Any]]:
    """Per edit policy of a generator unit: per class sources, edits, strengths, the distance to the source apart
    from the distance to the other training images, near-copies of other images, and source -> edit pairs."""
    arrays = sd.pool_arrays(key)
    out = []
    for ekey, rec in sd.unit_result(key).get("edits", {}).items():
        p, audit_rec = rec["policy"], rec.get("audit") or {}
        rows, pairs = [], []
        for cls, c in rec["classes"].items():
            s = c["strengths"]
            rows.append({"cls": cls, "from": ", ".join(c["source_classes"]), "sources": c["sources"],
                         "edits": c["edits"], "strength": f"{min(s):.2f}-{max(s):.2f}" if s else "",
                         "source_distance": _f(float(c.get("source_distance", math.nan))),
                         "other_distance": _f(float(c.get("other_distance", math.nan))),
                         "flagged": c.get("flagged", "")})
            source, edit = _strips(sd, arrays, ekey, cls, ("source_", ""))
            pairs.append({"cls": cls, "source": source, "edit": edit})
        what = (f"{p['per_image']} per image, strength {p['strength']}"
                + (f", towards {p['target']}" if p.get("target") else ""))
        out.append({"key": ekey, "what": what, "rows": rows, "pairs": pairs,
                    "dropped": audit_rec.get("dropped", 0), "audited": bool(audit_rec)})
    return out


def _score_rows(model_dir: Path) -> list[dict[str, Any]]:
    """The checkpoint scores of a generator folder as ``eval_*`` rows for the training-curve figure."""
    from cxraug.generators.base import read_scores

    return [{"step": r["step"], **{f"eval_{k}": v for k, v in r["results"].items()}} for r in read_scores(model_dir)]


def generator_table(sd: StudyDir) -> list[dict[str, str]]:
    return [{"generator": r["generator"], "model": r.get("model", ""), "regime": r["regime"], "draw": r.get("draw", ""),
             "gen_seed": r.get("gen_seed", ""), **{c: _f(num(r, c), 4 if "kid" in c else 3) for c in GEN_COLUMNS}}
            for r in sd.units("generator")]


def audit(sd: StudyDir) -> dict[str, Any]:
    """Data provenance, counts per split and regime, skipped files and warnings (leakage, duplicates)."""
    s = sd.study
    splits = [(name, s[name]) for name in ("train", "val", "test") if isinstance(s.get(name), dict)]
    return {"data": s.get("data", "unknown"), "fingerprint": s.get("fingerprint", ""),
            "test_data": s.get("test_data") or "internal test split", "classes": sd.classes, "splits": splits,
            "patients": s.get("patients") or {}, "regimes": s.get("regimes") or {},
            "skipped_count": s.get("skipped", len(sd.skipped)), "skipped": sd.skipped[:200],
            "warnings": list(s.get("warnings") or [])}


def environment(sd: StudyDir) -> dict[str, Any]:
    """Versions, device, command and the wall time of every unit."""
    s = sd.study
    versions = s.get("versions")
    if not versions:
        versions = {"cxraug": s.get("cxraug", __version__), "python": s.get("python", "")}
        for pkg in VERSIONED:
            try:
                versions[pkg] = metadata.version(pkg) + " (at report time)"
            except metadata.PackageNotFoundError:
                continue
    execution = sd.protocol.get("execution") or {}
    units = []
    for r in sd.results + sd.generators:
        if r.get("kind") == "generator":
            label = f"generator {r['generator']} | {r['regime']} draw {r['draw']} seed {r['gen_seed']}"
        else:
            label = (f"{r['classifier']} | {r['arm']} | {r['regime']} draw {r['draw']} seed {r['clf_seed']}"
                     + (f" gen-seed {r['gen_seed']}" if r.get("gen_seed") else ""))
        units.append({"unit": r.get("unit", ""), "kind": r.get("kind", ""), "label": label,
                      "wall_s": _f(num(r, "wall_s"), 1)})
    total = sum(v for v in (num(r, "wall_s") for r in sd.results + sd.generators) if not math.isnan(v))
    info = {"study wall time (s)": _f(num(s, "wall_s"), 1), "sum of unit wall times (s)": _f(total, 1),
            "device": s.get("device") or execution.get("device", "unknown"), "threads per unit":
            execution.get("threads", ""), "executor": s.get("executor", ""), "platform": s.get("platform", ""),
            "command": s.get("command", "")}
    return {"info": info, "versions": versions, "units": units}


def build_report(out: str | Path) -> Path:
    """Write ``OUT/report.html`` from the study outputs in ``OUT`` (atomically); returns its path."""
    faults.point("report")
    sd = StudyDir.load(out)
    env = jinja2.Environment(loader=jinja2.PackageLoader("cxraug.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html").render(
        title=sd.study.get("name") or sd.protocol.get("name") or Path(out).name,
        description=sd.protocol.get("description", ""),
        phantom=sd.study.get("data") == "phantom",
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cxraug=__version__,
        headline=headline(sd), fairness=sd.study.get("fairness") or {}, failures=sd.study.get("failures") or [],
        integrity=sd.study.get("integrity") or {},
        summary=summary_tables(sd), comparisons=comparison_rows(sd), ablation=ablation_rows(sd), bars=bar_charts(sd),
        confusions=confusion_matrices(sd), generators=generator_sections(sd), generator_rows=generator_table(sd),
        gen_columns=GEN_COLUMNS, bar_metrics=BAR_METRICS, audit=audit(sd), env=environment(sd))
    path = Path(out) / "report.html"
    io.write_text(path, html)
    return path
