"""The cost model's estimate against the wall times a finished study folder recorded (JSON on stdout).

Builds the plan of PROTOCOL as ``cxraug study`` would, estimates every unit from step times measured on this machine
(:mod:`cxraug.study.cost`, cached), and compares each estimate with the ``wall_s`` of the matching finished unit in
OUT (matched by unit label - generator, arm, regime, draw, seeds - so that folders written by an older cxraug, whose
unit keys differ, still compare). Prints per unit and per kind the ratio actual / estimate, and the sum of both.

Example: python bench/cost_estimate.py covidgan-acgan-cpu runs/acgan-cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cxraug.io import read_checked_json
from cxraug.study.baselines import complete_arms
from cxraug.study.cost import estimate_plan
from cxraug.study.data import load_study_data, sizes_needed
from cxraug.study.plan import DataInfo, build_plan
from cxraug.study.protocol import load_protocol


def _walls_by_label(out: Path) -> dict[str, float]:
    """label -> wall seconds of each finished unit in a study folder (plan.json gives the fields)."""
    walls = {}
    for entry in json.loads((out / "plan.json").read_text()):
        result = out / "units" / entry["key"] / "result.json"
        if result.is_file():
            walls[_label(entry["kind"], entry["fields"])] = float(read_checked_json(result).get("wall_s", 0.0))
    return walls


def _label(kind: str, f: dict) -> str:
    if kind == "generator":
        return f"generator {f['generator']} | {f['regime']} draw {f['draw']} seed {f['gen_seed']}"
    return f"{f['classifier']} | {f['arm']} | {f['regime']} draw {f['draw']} gen {f['gen_seed']} seed {f['clf_seed']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("protocol")
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    proto = load_protocol(args.protocol)
    data = load_study_data(proto, args.data, None)
    proto, _ = complete_arms(proto, data.classes)
    size, _, _ = sizes_needed(proto)
    info = DataInfo(fingerprint=data.fingerprint, classes=data.classes, counts=data.counts(size),
                    sizes_fingerprint=data.fingerprints, test_fingerprint=data.test_fingerprint, size=size)
    plan = build_plan(proto, info)
    est = estimate_plan(plan, proto, data, size, set(), workers=1)
    walls = _walls_by_label(args.out)
    rows = []
    for u in plan.units:
        label = _label(u.kind, u.fields)
        if label in walls:
            rows.append({"unit": label, "kind": u.kind, "estimate_s": round(est.unit_s[u.key], 1),
                         "actual_s": round(walls[label], 1), "ratio": round(walls[label] / est.unit_s[u.key], 3)})
    kinds = {k: {"units": len(r), "median_ratio": statistics.median(x["ratio"] for x in r),
                 "estimate_s": round(sum(x["estimate_s"] for x in r), 1),
                 "actual_s": round(sum(x["actual_s"] for x in r), 1)}
             for k in ("generator", "classifier") if (r := [x for x in rows if x["kind"] == k])}
    print(json.dumps({"protocol": proto.name, "out": str(args.out), "threads": proto.execution.threads,
                      "matched_units": len(rows), "of": len(plan.units), "by_kind": kinds,
                      "estimate_s": round(sum(x["estimate_s"] for x in rows), 1),
                      "actual_s": round(sum(x["actual_s"] for x in rows), 1), "units": rows}, indent=2))


if __name__ == "__main__":
    main()
