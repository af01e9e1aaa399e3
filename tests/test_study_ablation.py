"""The recipe ablation: each generative arm's components beside its paired difference to classical."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from report_helpers import make_study_dir
from study_tiny import tiny_protocol, write_protocol

from cxraug import io
from cxraug.augment.synthetic import SyntheticPolicy
from cxraug.report import build_report
from cxraug.study.ablation import _mode, ablation_rows
from cxraug.study.protocol import load_protocol


def _comparison(arm: str, baseline: str, role: str, metric: str, mean: float) -> dict:
    return {"regime": "n12", "classifier": "cnn", "arm": arm, "baseline": baseline, "baseline_role": role,
            "metric": metric, "mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01, "p_holm": 0.5}


def test_rows_name_the_components_and_take_the_difference_to_classical(tmp_path: Path) -> None:
    raw = tiny_protocol(tmp_path / "cache")
    raw["arms"] = [{"name": "none"}, {"name": "classical", "classical": "fedoruk"},
                   {"name": "curated", "generator": "dcgan", "classical": "fedoruk", "synthetic_weight": 0.5,
                    "schedule": "pretrain-finetune", "synthetic_label_smoothing": 0.1,
                    "policy": {"mode": "add", "n_per_class": 12, "filter": {"confidence": 0.6, "diversity": True}}}]
    proto = load_protocol(write_protocol(tmp_path / "p.yaml", raw))
    comparisons = [_comparison("curated", "none", "none", "f1", 0.2),
                   _comparison("curated", "classical", "classical", "f1", 0.03),
                   _comparison("curated", "classical", "classical", "mcc", -0.02),
                   _comparison("classical", "none", "none", "f1", 0.1)]
    rows = ablation_rows(proto, comparisons, {("n12", "cnn"): {"curated": [0.5, 0.7], "classical": [0.9]}})
    assert len(rows) == 1  # generative arms only
    r = rows[0]
    assert (r["arm"], r["generator"], r["mode"], r["filter"], r["weight"], r["schedule"], r["classical"]) == (
        "curated", "dcgan (dcgan)", "add 12/class", "confidence>=0.6, diversity", "0.5, smoothing 0.1",
        "pretrain-finetune (0.5 real)", "fedoruk")
    assert (r["f1_vs_classical"], r["mcc_vs_classical"], r["classical_arm"]) == (0.03, -0.02, "classical")
    assert r["val_f1"] == pytest.approx(0.6) and r["chosen"]  # the only generative arm
    edit = SyntheticPolicy(mode="edit", per_image=2, strength=[0.2, 0.4], target="COVID")
    assert _mode(edit) == "edit x2, s=[0.2, 0.4] towards COVID"


def test_the_arm_chosen_is_the_best_on_validation_never_on_test(tmp_path: Path) -> None:
    raw = tiny_protocol(tmp_path / "cache")
    raw["arms"] = [{"name": "classical", "classical": "fedoruk"},
                   {"name": "free", "generator": "dcgan", "policy": {"mode": "add", "n_per_class": 12}},
                   {"name": "curated", "generator": "dcgan",
                    "policy": {"mode": "add", "n_per_class": 12, "filter": {"confidence": 0.6}}},
                   {"name": "weighted", "generator": "dcgan", "synthetic_weight": 0.5,
                    "policy": {"mode": "add", "n_per_class": 12}}]
    proto = load_protocol(write_protocol(tmp_path / "p.yaml", raw))
    # "free" is best on test, "curated" on validation; "weighted" lost every repeat's validation score
    comparisons = [_comparison("free", "classical", "classical", "f1", 0.08),
                   _comparison("curated", "classical", "classical", "f1", 0.01),
                   _comparison("weighted", "classical", "classical", "f1", 0.02)]
    val = {("n12", "cnn"): {"free": [0.70, 0.72], "curated": [0.80, 0.74, math.nan], "weighted": [math.nan],
                            "classical": [0.95]}}
    rows = ablation_rows(proto, comparisons, val)
    assert [(r["arm"], r["chosen"]) for r in rows] == [("free", False), ("curated", True), ("weighted", False)]
    assert rows[1]["val_f1"] == pytest.approx(0.77) and math.isnan(rows[2]["val_f1"])
    # a tie goes to the arm listed first
    val[("n12", "cnn")]["free"] = [0.77]
    assert [r["arm"] for r in ablation_rows(proto, comparisons, val) if r["chosen"]] == ["free"]


def test_the_report_shows_the_ablation_table(tmp_path: Path) -> None:
    out = make_study_dir(tmp_path / "study")
    io.write_csv(out / "ablation.csv", [{"regime": "n20", "classifier": "cnn", "arm": "dcgan",
                                         "generator": "dcgan (dcgan)", "mode": "add 20/class", "filter": "-",
                                         "weight": "1.0", "schedule": "mixed", "classical": "-",
                                         "f1_vs_classical": 0.031, "f1_low": 0.004, "f1_high": 0.058,
                                         "f1_p_holm": 0.04, "classical_arm": "classical", "val_f1": 0.8123,
                                         "chosen": True}])
    text = build_report(out).read_text()
    assert "Recipe ablation" in text and "+0.031 [+0.004, +0.058]" in text and "add 20/class" in text
    assert "<td>0.812</td>" in text and "chosen on validation</td>" in text
    assert "Recipe ablation" not in build_report(make_study_dir(tmp_path / "plain")).read_text()
