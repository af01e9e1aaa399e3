"""Everything a study writes besides its units: results.csv (classifier units), generators.csv (generator units),
generator_classes.csv, summary.csv, comparisons.csv, ablation.csv, subgroups.csv, tables.md, study.json, the report, and the
tracker runs (all from the stored unit results)."""

from __future__ import annotations

import math
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cxraug import __version__, io
from cxraug.classifiers.evaluate import confusion_batch, metrics_from_confusion
from cxraug.data.load import image_meta_column, write_skipped
from cxraug.device import resolve_device
from cxraug.report import build_report, save_real_samples
from cxraug.stamp import run_stamp, versions
from cxraug.study import stats
from cxraug.study.ablation import ablation_rows
from cxraug.study.baselines import pairings
from cxraug.study.cost import Estimate
from cxraug.study.data import StudyData, audit_warnings, sizes_needed
from cxraug.study.curated import add_curation, curation_columns, curation_rows, curation_warnings
from cxraug.study.plan import Plan, Unit
from cxraug.study.protocol import Protocol
from cxraug.study.store import UnitStore
from cxraug.study.track import StudyTracking
from cxraug.study.units import OK
from cxraug.ui import console

#: classifier metrics summarised (macro averages for precision/recall/F1/specificity)
METRICS = ("accuracy", "precision", "recall", "f1", "specificity", "mcc", "auc")
#: generator image metrics, class-averaged in generators.csv; PRDC's precision, recall and density are named
#: ``prdc_*`` there (and in generator_classes.csv) so that no column shares a name with a classifier metric
GEN_METRICS = ("kid", "floor_kid", "fid", "floor_fid", "coverage", "floor_coverage", "prdc_precision", "prdc_recall",
               "prdc_density", "memorised_fraction")
PRDC_COLUMNS = {f"{floor}{m}": f"{floor}prdc_{m}" for floor in ("", "floor_")
                for m in ("precision", "recall", "density")}


def track_unit(tracking: StudyTracking, unit: Unit, store: UnitStore) -> None:
    """Log a finished unit with its results.csv or generators.csv row (values as stored, so they equal the
    file's)."""
    res = store.load(unit.key)
    row = classifier_row(unit, res) if unit.kind == "classifier" else generator_row(unit, res)[0]
    tracking.unit(unit, row, res, store.folder(unit.key))


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    io.write_csv(path, [{k: _fmt(v) for k, v in r.items()} for r in rows])


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    if v is None:
        return ""
    return v


def generator_rows(plan: Plan, store: UnitStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per generator unit with class-averaged image metrics, one row per unit x class)."""
    unit_rows, class_rows = [], []
    for u in plan.of_kind("generator"):
        row, per_class = generator_row(u, store.load(u.key))
        unit_rows.append(row)
        class_rows += per_class
    return unit_rows, class_rows


def generator_row(u: Unit, res: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The generators.csv row of a finished generator unit and its generator_classes.csv rows (one per class)."""
    per_class = {c: {PRDC_COLUMNS.get(k, k): v for k, v in m.items()} for c, m in res.get("image_metrics", {}).items()}
    base = {"unit": u.key, "kind": "generator", **u.fields}
    fits = res.get("fit", [])
    steps = ";".join(f"{r['folder']}:{r['steps']}" for r in fits)
    best = ";".join(f"{r['folder']}:{r['best_step']}" for r in fits)
    stopped = ";".join(f"{r['folder']}:{r.get('stopped_early', False)}" for r in fits)
    row = {**base, "status": res.get("status", OK), "steps": steps, "best_step": best, "stopped_early": stopped,
           "converged": generators_converged(fits),
           **{k: stats.mean_of_finite([m.get(k, math.nan) for m in per_class.values()]) for k in GEN_METRICS},
           "wall_s": res["wall_s"]}
    return row, [{**base, "class": c, **m} for c, m in per_class.items()]


def generators_converged(fits: list[dict[str, Any]]) -> bool | None:
    """False when a trained model's best checkpoint is its last one (KID still improving: may be undertrained);
    None when no checkpoint was scored."""
    scored = [r for r in fits if r.get("best_step") is not None]
    return all(r["best_step"] < r["steps"] for r in scored) if scored else None


def classifier_rows(plan: Plan, store: UnitStore) -> list[dict[str, Any]]:
    return [classifier_row(u, store.load(u.key)) for u in plan.of_kind("classifier")]


def classifier_row(u: Unit, res: dict[str, Any]) -> dict[str, Any]:
    """The results.csv row of a finished classifier unit; a failed unit (``status`` other than ``ok``) has no
    metrics."""
    budget = u.spec.budget
    metrics = res.get("metrics", {})
    return {"unit": u.key, "kind": "classifier", **u.fields, "generator_unit": u.needs or "",
            "status": res.get("status", OK), "n_train": res.get("n_train"), "n_real": res.get("n_real"),
            "n_synthetic": res.get("n_synthetic"), "budget_steps": budget.max_steps,
            "eval_every": budget.eval_every, "early_stopping": budget.early_stopping,
            "steps": res.get("steps"), "best_step": res.get("best_step"), "converged": res.get("converged"),
            "val_f1": res.get("val_f1", math.nan), **{m: metrics.get(m, math.nan) for m in METRICS},
            **curation_columns(res), "wall_s": res["wall_s"]}


def failure_notes(plan: Plan, store: UnitStore, crows: list[dict[str, Any]]) -> list[str]:
    """One line per arm that lost repeats and per failed generator unit, saying why (study.json, console,
    report)."""
    out = []
    lost: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in crows:
        if r["status"] != OK:
            lost.setdefault((r["regime"], r["classifier"], r["arm"]), []).append(r)
    for (regime, clf, arm), rows in lost.items():
        n = sum(1 for r in crows if (r["regime"], r["classifier"], r["arm"]) == (regime, clf, arm))
        which = ", ".join(f"draw {r['draw']} seed {r['clf_seed']}" + ("" if r["gen_seed"] is None else
                                                                        f" gen-seed {r['gen_seed']}")
                          + f": {r['status']}" for r in rows)
        out.append(f"arm {arm} ({regime}, {clf}) lost {len(rows)} of {n} repeats ({which}); its statistics use "
                   f"the other {n - len(rows)}")
    for u in plan.of_kind("generator"):
        res = store.load(u.key)
        if res.get("status", OK) != OK:
            out.append(f"{u.label} {res['status']}: {res.get('failure', '')}")
    return out


def budget_note(proto: Protocol, plan: Plan) -> str:
    """How the arms' training budgets compare, in one line (study.json, console, report)."""
    batch = {c.name: int(c.config.get("batch_size", 32)) for c in proto.classifiers}
    budgets = sorted({(u.fields["regime"], u.fields["classifier"], u.spec.budget.max_steps,
                       u.spec.budget.eval_every) for u in plan.of_kind("classifier")})
    each = "; ".join(f"{r}/{c}: {m} steps of batch {batch[c]}, validation every {e}" for r, c, m, e in budgets)
    if proto.training.equal_steps:
        return (f"equal budgets: every arm makes the same optimiser steps and restores its best validation check "
                f"({each})")
    return (f"early stopping: every arm stops after `patience` validation checks without improvement, the same "
            f"patience in steps and the same cap for every arm; step counts differ per arm (results.csv steps) "
            f"({each})")


def fairness_warnings(crows: list[dict[str, Any]], grows: list[dict[str, Any]]) -> list[str]:
    """Undertrained units: classifiers whose validation score was still improving at the end of their budget,
    generators whose best checkpoint is their last."""
    out = []
    flagged: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in crows:
        if r["converged"] is False:
            flagged.setdefault((r["regime"], r["classifier"], r["arm"]), []).append(r)
    for (regime, clf, arm), rows in flagged.items():
        n = sum(1 for r in crows if (r["regime"], r["classifier"], r["arm"]) == (regime, clf, arm))
        steps = ", ".join(f"{r['best_step']}/{r['steps']}" for r in rows)
        who = "baseline" if rows[0]["role"] != "generative" else "arm"
        out.append(f"{who} may be undertrained: {arm} ({regime}, {clf}) - {len(rows)} of {n} repeats still "
                   f"improved within the patience window of their budget (best step/steps: {steps}); raise the "
                   f"classifier's epochs or training.max_steps")
    for g in grows:
        if g["converged"] is False:
            out.append(f"generator may be undertrained: {g['generator']} ({g['regime']} draw {g['draw']} seed "
                       f"{g['gen_seed']}) - its best checkpoint is its last (best step {g['best_step']} of "
                       f"{g['steps']}); raise its steps")
    return out


def _val_f1(crows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, list[float]]]:
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in crows:
        out.setdefault((r["regime"], r["classifier"]), {}).setdefault(r["arm"], []).append(float(r["val_f1"]))
    return out


def _subgroup_rows(plan: Plan, store: UnitStore, data: StudyData, proto: Protocol, size: int) -> list[dict]:
    test = data.test[size]
    k = len(data.classes)
    rows = []
    for column in proto.metrics.subgroups:
        values = image_meta_column(test, column).astype(str)
        if not any(values):
            continue
        per_unit = []
        for u in plan.of_kind("classifier"):
            res = store.load(u.key)
            if res.get("status", OK) != OK:
                continue
            yt, yp = np.asarray(res["y_true"]), np.asarray(res["y_pred"])
            for v in sorted(set(values) - {""}):
                idx = np.flatnonzero(values == v)[None, :]
                m = metrics_from_confusion(confusion_batch(yt, yp, idx, k))
                per_unit.append({**u.fields, "subgroup": f"{column}={v}", "n_test": idx.shape[1],
                                 **{name: float(val[0]) for name, val in m.items()}})
        for v in sorted({r["subgroup"] for r in per_unit}):
            sel = [r for r in per_unit if r["subgroup"] == v]
            for s in stats.summarise(sel, stats.BOOTSTRAP_METRICS, proto.metrics.confidence):
                rows.append({**s, "subgroup": v, "n_test": sel[0]["n_test"]})
    return rows


def write_outputs(proto: Protocol, plan: Plan, store: UnitStore, data: StudyData, out: Path, wall_s: float,
                  executor: str, added: list[str] | None = None, integrity: dict[str, Any] | None = None,
                  tracking: StudyTracking | None = None, estimate: Estimate | None = None) -> None:
    """results.csv, generators.csv, generator_classes.csv, summary.csv, comparisons.csv, subgroups.csv, tables/,
    study.json (and the study's tracker runs: units not logged yet, then the study run with the outputs). Failed
    units are listed (``status``, ``lost_repeats``, ``failures``) and left out of every statistic."""
    conf = proto.metrics.confidence
    every = classifier_rows(plan, store)
    crows = [r for r in every if r["status"] == OK]
    grows, gclass = generator_rows(plan, store)
    _csv(out / "results.csv", every)
    _csv(out / "generators.csv", grows)
    _csv(out / "generator_classes.csv", gclass)
    curation = curation_rows(plan, store)
    if curation:
        _csv(out / "curation.csv", curation)
    by_step = [{"unit": u.key, **u.fields, **r} for u in plan.of_kind("generator")
               for r in store.load(u.key).get("by_step", [])]
    if by_step:
        _csv(out / "generator_checkpoints.csv", by_step)
    metrics = [m for m in METRICS if any(not math.isnan(r[m]) for r in crows)] or ["f1"]
    summary = stats.summarise(crows, metrics, conf)
    ok_groups = {(r["regime"], r["classifier"], r["arm"]) for r in crows}
    summary += stats.summarise([r for r in every if (r["regime"], r["classifier"], r["arm"]) not in ok_groups],
                               metrics, conf)  # arms that lost every repeat: n = 0
    val_f1 = _val_f1(crows)
    pairs = pairings(proto, data.classes, val_f1)
    comparisons = stats.compare(crows, pairs, metrics, conf)
    strongest = {(p.regime, p.classifier): p.baseline for p in pairs if p.strongest}
    undertrained: dict[tuple[str, str, str], int] = {}
    lost: dict[tuple[str, str, str], int] = {}
    for r in every:
        key = (r["regime"], r["classifier"], r["arm"])
        undertrained[key] = undertrained.get(key, 0) + (r["converged"] is False)
        lost[key] = lost.get(key, 0) + (r["status"] != OK)
    for row in summary:
        key = (row["regime"], row["classifier"], row["arm"])
        row["strongest_baseline"] = strongest.get((row["regime"], row["classifier"]), "")
        row["undertrained"] = undertrained[key]
        row["lost_repeats"] = lost[key]
    failures = failure_notes(plan, store, every)
    fairness = {"budget": budget_note(proto, plan), "added_arms": list(added or []),
                "warnings": fairness_warnings(crows, grows) + curation_warnings(crows),
                "strongest_baselines": {f"{r}/{c}": a for (r, c), a in strongest.items()}}
    _add_bootstrap(plan, store, data, proto, summary, comparisons)
    _add_generator_quality(proto, summary, grows)
    add_curation(summary, crows)
    _csv(out / "summary.csv", summary)
    _csv(out / "comparisons.csv", comparisons)
    ablation = ablation_rows(proto, comparisons, val_f1)
    fairness["chosen_on_validation"] = {f"{r['regime']}/{r['classifier']}": r["arm"]
                                        for r in ablation if r["chosen"]}
    if ablation:
        _csv(out / "ablation.csv", ablation)
    _, _, clf_sizes = sizes_needed(proto)
    sub = _subgroup_rows(plan, store, data, proto, clf_sizes[0])
    if sub:
        _csv(out / "subgroups.csv", sub)
    tables = render_tables(proto, summary)
    io.write_text(out / "tables.md", tables)

    data_size, _, _ = sizes_needed(proto)
    write_skipped(out / "skipped.csv", data.skipped)
    save_real_samples(out, data.splits[data_size].train)
    meta = {"name": proto.name, "scale": proto.scale, "cxraug": __version__, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions(), "device": str(resolve_device(
                proto.execution.device)), "command": " ".join(sys.argv), "executor": executor, "wall_s": wall_s,
            "stamp": run_stamp(resolve_device(proto.execution.device), data.fingerprint),
            "units": len(plan.units), "warnings": audit_warnings(data.splits[data_size], proto.metrics.subgroups),
            "fairness": fairness, "failures": failures, "integrity": dict(integrity or {}), **data.describe()}
    if estimate is not None:
        meta["cost"] = estimate.record({u.key: float(store.load(u.key).get("wall_s", 0.0)) for u in plan.units},
                                       wall_s)
    io.write_json(out / "study.json", meta)
    print_summary(proto, summary, comparisons)
    console.print(fairness["budget"])
    for r in (r for r in ablation if r["chosen"]):
        console.print(f"generative arm chosen on validation ({r['regime']} / {r['classifier']}): {r['arm']}, mean "
                      f"validation macro-F1 {r['val_f1']:.3f}; test macro-F1 vs {r['classical_arm']} "
                      f"{r.get('f1_vs_classical', math.nan):+.3f} [{r.get('f1_low', math.nan):+.3f}, "
                      f"{r.get('f1_high', math.nan):+.3f}]")
    for line in fairness["added_arms"]:
        console.print(f"[yellow]note[/]: {line}")
    for line in fairness["warnings"] + failures:
        console.print(f"[yellow]warning[/]: {line}")
    console.print(tables)

    report = build_report(out)
    if tracking is not None:
        for unit in plan.units:
            track_unit(tracking, unit, store)
        tracking.study(out, meta)
    console.print(f"results: {out}/summary.csv, {out}/comparisons.csv, {out}/results.csv"
                  + (f", {out}/generators.csv" if grows else "") + f", {out}/tables.md; report: {report}")


def _add_bootstrap(plan: Plan, store: UnitStore, data: StudyData, proto: Protocol, summary: list[dict],
                   comparisons: list[dict]) -> None:
    """Second variance component: percentile intervals over test-image resamples (models held fixed)."""
    b = proto.metrics.bootstrap
    if b <= 0:
        return
    units, groups = {}, {}
    for u in plan.of_kind("classifier"):
        res = store.load(u.key)
        if res.get("status", OK) != OK:
            continue
        units[u.key] = (np.asarray(res["y_true"], dtype=np.int64), np.asarray(res["y_pred"], dtype=np.int64))
        groups.setdefault((u.fields["regime"], u.fields["classifier"], u.fields["arm"]), []).append(u.key)
    pairs = sorted({((c["regime"], c["classifier"], c["arm"]), (c["regime"], c["classifier"], c["baseline"]))
                    for c in comparisons})
    grp, prs = stats.bootstrap_test(units, groups, pairs, len(data.classes), b, seed=0,
                                    confidence=proto.metrics.confidence)
    note = f"test-image bootstrap x{b} (trained models fixed; mean over the repeats)"
    g = {(r["group"], r["metric"]): r for r in grp}
    for s in summary:
        r = g.get(((s["regime"], s["classifier"], s["arm"]), s["metric"]))
        if r:
            s.update(boot_low=r["boot_low"], boot_high=r["boot_high"], boot_sd=r["boot_sd"], boot_covers=note)
    p = {(r["group"], r["baseline_group"], r["metric"]): r for r in prs}
    for c in comparisons:
        r = p.get(((c["regime"], c["classifier"], c["arm"]), (c["regime"], c["classifier"], c["baseline"]),
                   c["metric"]))
        if r:
            c.update(boot_low=r["boot_low"], boot_high=r["boot_high"], boot_sd=r["boot_sd"], boot_covers=note)


def _add_generator_quality(proto: Protocol, summary: list[dict], grows: list[dict]) -> None:
    """KID and coverage of each generative arm's generator beside its rows, with the real-vs-real floor."""
    for s in summary:
        arm = proto.arm(s["arm"])
        if not arm.generator:
            continue
        sel = [g for g in grows if g["generator"] == arm.generator and g["regime"] == s["regime"]]
        for k in ("kid", "floor_kid", "coverage", "floor_coverage", "memorised_fraction"):
            s[f"gen_{k}"] = stats.mean_of_finite([g[k] for g in sel])


def _pm(s: dict[str, Any]) -> str:
    sd = "" if math.isnan(s["sd"]) else f" ± {s['sd']:.3f}"
    return f"{s['mean']:.3f}{sd}"


def render_tables(proto: Protocol, summary: list[dict]) -> str:
    """The published tables in their own layout (rows = augmentation pipelines, columns = metrics),
    plus one default table per regime and classifier. Cells: mean ± sd over repeats."""
    idx = {(s["regime"], s["classifier"], s["arm"], s["metric"]): s for s in summary}
    specs = [(t.title, t.regime, t.classifier, t.metrics, t.rows) for t in proto.tables]
    if not specs:
        specs = [(f"{r.name} / {c.name}", r.name, c.name, list(METRICS), {}) for r in proto.regimes
                 for c in proto.classifiers]
    regimes = {r.name: r for r in proto.regimes}
    parts = []
    for title, regime, clf, metrics, rows in specs:
        clf = clf or proto.classifiers[0].name
        labels = rows or {a.name: a.name for a in proto.arms_in(regimes[regime])}
        metrics = [m for m in metrics if any((regime, clf, a, m) in idx for a in labels)]
        lines = [f"### {title}", "", "| Augmentation pipeline | " + " | ".join(metrics) + " |",
                 "|---" * (len(metrics) + 1) + "|"]
        for arm, label in labels.items():
            cells = [(_pm(idx[(regime, clf, arm, m)]) if (regime, clf, arm, m) in idx else "-") for m in metrics]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        n = next((idx[(regime, clf, a, metrics[0])] for a in labels if (regime, clf, a, metrics[0]) in idx), None)
        if n is not None:
            lines += ["", f"mean ± sd over {n['n']} repeats ({n['covers']}); regime {regime}, classifier {clf}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def print_summary(proto: Protocol, summary: list[dict], comparisons: list[dict]) -> None:
    """Per regime and classifier: each arm's accuracy / macro-F1 / MCC with CIs, the paired difference in
    macro-F1 of each generative arm against the strongest non-generative arm (chosen on validation) and the
    generator's KID and coverage beside the real-vs-real floor."""
    from rich.table import Table

    for regime in proto.regimes:
        for clf in proto.classifiers:
            idx = {(s["arm"], s["metric"]): s for s in summary if s["regime"] == regime.name
                   and s["classifier"] == clf.name}
            best = next((s["strongest_baseline"] for s in idx.values()), "")
            t = Table(title=f"{proto.name}: {regime.name} / {clf.name} (strongest baseline by validation "
                            f"macro-F1: {best or '-'})")
            for col in ("arm", "accuracy", "macro-F1 [CI]", "MCC", "ΔF1 vs strongest baseline [CI] p_holm",
                        "gen KID (floor)", "gen coverage (floor)"):
                t.add_column(col)
            for arm in proto.arms_in(regime):
                f1 = idx.get((arm.name, "f1"))
                if f1 is None:
                    continue
                diff = next((c for c in comparisons if c["regime"] == regime.name and c["classifier"] == clf.name
                             and c["arm"] == arm.name and c["strongest_baseline"] and c["metric"] == "f1"), None)
                d = "" if diff is None else (f"{diff['mean']:+.3f} [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}] "
                                             f"p={diff.get('p_holm', math.nan):.3g}")
                kid = "" if "gen_kid" not in f1 else f"{f1['gen_kid']:.4f} ({f1['gen_floor_kid']:.4f})"
                cov = "" if "gen_coverage" not in f1 else f"{f1['gen_coverage']:.2f} ({f1['gen_floor_coverage']:.2f})"
                t.add_row(arm.name, _pm(idx[(arm.name, "accuracy")]),
                          f"{_pm(f1)} [{f1['ci_low']:.3f}, {f1['ci_high']:.3f}]", _pm(idx[(arm.name, "mcc")]), d,
                          kid, cov)
            console.print(t)
    console.print("intervals: t-intervals over repeats (sources in summary.csv 'covers'); boot_* columns: "
                  "test-image bootstrap")
