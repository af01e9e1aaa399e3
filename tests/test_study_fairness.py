"""Fair verdicts: equal step budgets, added baselines, the convergence guard and classifier defaults in a study."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxraug.study.protocol import load_protocol
from cxraug.study.runner import run_study
from study_tiny import tiny_protocol, write_protocol


def _history(out: Path, unit: str) -> list[dict[str, str]]:
    with open(out / "units" / unit / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _results(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["kind"] == "classifier"]


@pytest.fixture(scope="module")
def default_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study (none + DCGAN) with default training settings: equal steps, baselines added."""
    tmp = tmp_path_factory.mktemp("fair")
    raw = tiny_protocol(tmp / "cache", classifiers=[{"name": "cnn", "model": "custom-cnn",
                                                     "config": {"epochs": 1, "batch_size": 8}}])
    out = tmp / "out"
    run_study(load_protocol(write_protocol(tmp / "p.yaml", raw)), out)
    return out


def test_equal_steps_every_arm_makes_the_same_optimiser_steps(default_study: Path) -> None:
    rows = _results(default_study)
    assert {r["arm"] for r in rows} == {"none", "dcgan", "classical", "oversample+fedoruk"}
    n_train = {r["arm"]: int(r["n_train"]) for r in rows}
    assert n_train["dcgan"] == n_train["oversample+fedoruk"] == 2 * n_train["none"]  # +12 per class
    steps = {r["arm"]: [h["steps"] for h in _history(default_study, r["unit"])] for r in rows}
    # 24 real images / batch 8 = 3 steps a pass, 1 epoch: 3 steps for every arm, the larger ones included
    assert set(map(tuple, steps.values())) == {("3",)}
    assert {r["steps"] for r in rows} == {r["budget_steps"] for r in rows} == {"3"}


def test_added_baselines_are_noted_in_the_outputs(default_study: Path) -> None:
    fairness = json.loads((default_study / "study.json").read_text())["fairness"]
    assert any("'oversample+fedoruk'" in a and "dcgan" in a for a in fairness["added_arms"])
    assert any("'classical'" in a for a in fairness["added_arms"])
    assert fairness["budget"].startswith("equal budgets")
    report = (default_study / "report.html").read_text()
    assert "added arm &#39;oversample+fedoruk&#39;" in report
    # the summary names the strongest non-generative arm, chosen on validation images
    with open(default_study / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    val_f1: dict[str, list[float]] = {}
    for r in _results(default_study):
        val_f1.setdefault(r["arm"], []).append(float(r["val_f1"]))
    means = {a: sum(v) / len(v) for a, v in val_f1.items() if a != "dcgan"}
    assert {s["strongest_baseline"] for s in summary} == {max(means, key=lambda a: means[a])}
    with open(default_study / "comparisons.csv", newline="") as f:
        strongest = [c for c in csv.DictReader(f) if c["strongest_baseline"] == "True" and c["metric"] == "f1"]
    assert [c["arm"] for c in strongest] == ["dcgan"]
    # the recipe ablation: the generative arm's components and its difference to the classical arm
    with open(default_study / "comparisons.csv", newline="") as f:
        vs = next(c for c in csv.DictReader(f) if c["arm"] == "dcgan" and c["baseline_role"] == "classical"
                  and c["metric"] == "f1")
    with open(default_study / "ablation.csv", newline="") as f:
        ablation = list(csv.DictReader(f))
    assert [(a["arm"], a["mode"], a["classical_arm"]) for a in ablation] == [("dcgan", "add 12/class", "classical")]
    assert ablation[0]["f1_vs_classical"] == vs["mean"] and "Recipe ablation" in report
    dcgan_val = val_f1["dcgan"]
    assert float(ablation[0]["val_f1"]) == pytest.approx(sum(dcgan_val) / len(dcgan_val))
    assert ablation[0]["chosen"] == "True"  # the only generative arm
    chosen = json.loads((default_study / "study.json").read_text())["fairness"]["chosen_on_validation"]
    assert list(chosen.values()) == ["dcgan"]


def test_a_budget_that_ends_while_the_loss_still_falls_is_flagged(default_study: Path) -> None:
    rows = _results(default_study)
    assert {r["converged"] for r in rows} == {"False"}  # one check per run: its best is its last
    warnings = json.loads((default_study / "study.json").read_text())["fairness"]["warnings"]
    assert any(w.startswith("baseline may be undertrained: none") for w in warnings)
    assert any(w.startswith("arm may be undertrained: dcgan") for w in warnings)
    report = (default_study / "report.html").read_text()
    assert "baseline may be undertrained: none" in report
    with open(default_study / "summary.csv", newline="") as f:
        assert {s["undertrained"] for s in csv.DictReader(f)} == {"2"}  # both seeds of every arm


def test_no_classifier_config_means_the_converging_defaults(tmp_path: Path) -> None:
    raw = tiny_protocol(tmp_path / "cache", arms=[{"name": "none"}], generators={},
                        classifiers=[{"name": "r18", "model": "resnet18"}], repeats={"classifier_seeds": 1},
                        training={"equal_steps": False})
    out = tmp_path / "out"
    run_study(load_protocol(write_protocol(tmp_path / "p.yaml", raw)), out)
    (row,) = _results(out)
    assert (row["budget_steps"], row["eval_every"], row["early_stopping"]) == ("400", "10", "True")
    history = _history(out, row["unit"])
    assert [int(h["steps"]) for h in history] == list(range(10, 10 * len(history) + 1, 10))
    scores = [(float(h["val_f1"]), -float(h["val_loss"])) for h in history]  # macro-F1, ties: lower loss
    best = scores.index(max(scores))
    assert int(row["best_step"]) == 10 * (best + 1)
    assert int(row["steps"]) < 400 and len(history) == best + 1 + 6  # stopped 6 checks after the best
