"""The recipe ablation: what each generative arm is made of, beside its paired difference to ``classical``.

One row per regime, classifier and generative arm (``ablation.csv``; the report's "Recipe ablation" table):
``generator`` (protocol entry and model), ``mode`` (add / balance / ratio, or edit with its edits per image,
strength and target), ``filter`` (the curation tests), ``weight`` (synthetic loss weight and label smoothing),
``schedule`` (mixed or pretrain-finetune), ``classical`` (the arm's classical policy), and for macro-F1 and MCC the
paired difference to the first ``classical`` arm with its interval and Holm-adjusted p (from ``comparisons.csv``),
``val_f1`` (the arm's mean validation macro-F1 over its repeats) and ``chosen``: the generative arm with the
highest ``val_f1`` of its regime and classifier, the one recipe a study picks without looking at test images (ties go
to the first arm of the protocol).
"""

from __future__ import annotations

import math
from typing import Any

from cxraug.augment.synthetic import CurationFilter, SyntheticPolicy
from cxraug.study.protocol import ArmSpec, Protocol

#: the metrics whose paired difference to classical the ablation shows
ABLATION_METRICS = ("f1", "mcc")


def _mode(policy: SyntheticPolicy | None) -> str:
    if policy is None:
        return "-"
    if policy.mode == "edit":
        strength = policy.strength if isinstance(policy.strength, (int, float)) else \
            f"[{policy.strength[0]}, {policy.strength[1]}]"
        towards = f" towards {policy.target}" if policy.target else ""
        return f"edit x{policy.per_image}, s={strength}{towards}"
    if policy.mode == "add":
        return f"add {policy.n_per_class}/class"
    if policy.mode == "ratio":
        return f"ratio {policy.ratio}"
    return "balance"


def _filter(f: CurationFilter | None) -> str:
    if f is None:
        return "-"
    tests = ([f"confidence>={f.confidence}"] if f.confidence is not None else []) + \
        ([f"realism k={f.realism}"] if f.realism is not None else []) + (["diversity"] if f.diversity else [])
    return ", ".join(tests) or "near-copy gate only"


def _weight(arm: ArmSpec) -> str:
    smooth = f", smoothing {arm.synthetic_label_smoothing}" if arm.synthetic_label_smoothing else ""
    return f"{arm.synthetic_weight}{smooth}"


def components(arm: ArmSpec, proto: Protocol) -> dict[str, str]:
    """The recipe columns of one generative arm."""
    gen = proto.generators[arm.generator] if arm.generator else None
    schedule = arm.schedule if arm.schedule == "mixed" else f"{arm.schedule} ({arm.finetune_fraction:g} real)"
    return {"generator": f"{arm.generator} ({gen.model})" if gen else "-", "mode": _mode(arm.policy),
            "filter": _filter(arm.policy.filter if arm.policy else None), "weight": _weight(arm),
            "schedule": schedule, "classical": arm.classical or "-"}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def ablation_rows(proto: Protocol, comparisons: list[dict[str, Any]],
                  val_f1: dict[tuple[str, str], dict[str, list[float]]]) -> list[dict[str, Any]]:
    """Rows of ``ablation.csv`` (empty when the study has no generative arm or no classical arm); ``val_f1``:
    (regime, classifier) -> arm -> the validation macro-F1 of each of its repeats."""
    vs = {(c["regime"], c["classifier"], c["arm"], c["metric"]): c for c in comparisons
          if c["baseline_role"] == "classical"}
    rows = []
    for regime in proto.regimes:
        for clf in proto.classifiers:
            group = []
            for arm in (a for a in proto.arms_in(regime) if a.role == "generative"):
                diffs: dict[str, Any] = {}
                for m in ABLATION_METRICS:
                    c = vs.get((regime.name, clf.name, arm.name, m))
                    if c is not None:
                        diffs.update({f"{m}_vs_classical": c["mean"], f"{m}_low": c["ci_low"],
                                      f"{m}_high": c["ci_high"], f"{m}_p_holm": c.get("p_holm")})
                        diffs.setdefault("classical_arm", c["baseline"])
                if diffs:
                    val = _mean(val_f1.get((regime.name, clf.name), {}).get(arm.name, []))
                    group.append({"regime": regime.name, "classifier": clf.name, "arm": arm.name,
                                  **components(arm, proto), **diffs, "val_f1": val, "chosen": False})
            scored = [r for r in group if math.isfinite(r["val_f1"])]
            if scored:
                max(scored, key=lambda r: r["val_f1"])["chosen"] = True
            rows += group
    return rows
