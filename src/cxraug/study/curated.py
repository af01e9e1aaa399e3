"""What a study writes about curated generator arms: their ``results.csv`` columns, ``curation.csv``, the
warning for an arm whose curated pool was short, and the summary's kept fraction and judge accuracy."""

from __future__ import annotations

from typing import Any

from cxraug.study.plan import Plan
from cxraug.study.stats import mean_of_finite
from cxraug.study.store import UnitStore


def curation_columns(res: dict[str, Any]) -> dict[str, Any]:
    """A curated arm's kept fraction and judge accuracy (no columns for other units)."""
    cur = res.get("curation")
    if cur is None:
        return {}
    return {"kept_fraction": cur["kept_fraction"], "judge_accuracy": cur["judge_accuracy"],
            "synthetic_short": ";".join(f"{c}:{v['got']}/{v['wanted']}" for c, v in cur["short"].items())}


def curation_rows(plan: Plan, store: UnitStore) -> list[dict[str, Any]]:
    """curation.csv: per generator unit, filter and class, the candidates drawn, kept and rejected by each test."""
    rows = []
    for u in plan.of_kind("generator"):
        for key, cur in store.load(u.key).get("curation", {}).items():
            f = cur["filter"]
            for c, rec in cur["classes"].items():
                rows.append({"unit": u.key, **u.fields, "filter": key, "confidence": f["confidence"],
                             "realism": f["realism"], "diversity": f["diversity"], "class": c, **rec,
                             "judge_accuracy": cur["judge"]["val_accuracy"], "judge": cur["judge"]["hash"]})
    return rows


def curation_warnings(crows: list[dict[str, Any]]) -> list[str]:
    """One line per curated arm whose curated pool held fewer images than it asked for."""
    short: dict[tuple[str, str, str], list[str]] = {}
    for r in crows:
        if r.get("synthetic_short"):
            short.setdefault((r["regime"], r["classifier"], r["arm"]), []).append(r["synthetic_short"])
    return [f"curated arm {arm} ({regime}, {clf}) trained on fewer synthetic images than its policy asks for in "
            f"{len(v)} unit(s) (class:got/wanted {', '.join(sorted(set(v)))}): too few candidates passed its "
            f"filter within max_draw; lower the thresholds or raise max_draw"
            for (regime, clf, arm), v in short.items()]


def add_curation(summary: list[dict[str, Any]], crows: list[dict[str, Any]]) -> None:
    """Mean kept fraction and judge accuracy beside each curated arm's summary rows."""
    for s in summary:
        sel = [r for r in crows if (r["regime"], r["classifier"], r["arm"]) == (s["regime"], s["classifier"],
                                                                               s["arm"]) and "kept_fraction" in r]
        if sel:
            s["kept_fraction"] = mean_of_finite([r["kept_fraction"] for r in sel])
            s["judge_accuracy"] = mean_of_finite([r["judge_accuracy"] for r in sel])
