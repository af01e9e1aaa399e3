"""Study outputs nothing else asserts: the data.where filter, subgroups.csv, tables.md, and balanced loss weights
computed from the real training subset for every arm alike."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_helpers import class_folders, write_csv
from study_tiny import write_protocol

import cxraug.study.units as units
from cxraug.classifiers.loss import class_weight_tensor
from cxraug.data.imageset import ImageSet
from cxraug.data.load import image_meta_column
from cxraug.study.baselines import complete_arms
from cxraug.study.data import load_study_data
from cxraug.study.plan import DataInfo, build_plan
from cxraug.study.protocol import load_protocol, validate_protocol
from cxraug.study.runner import run_study

PER_CLASS = 30


def _population(k: int) -> str:
    return ("adult", "pediatric", "adult", "unknown")[k % 4]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("outputs")
    root = class_folders(tmp / "data", {"COVID": PER_CLASS, "Normal": PER_CLASS})
    write_csv(root / "metadata.csv", [{"id": f"{c}_{k}", "class": c, "population": _population(k)}
                                      for c in ("COVID", "Normal") for k in range(PER_CLASS)])
    raw = {"name": "outputs", "scale": "test",
           "data": {"root": str(root), "where": {"population": ["adult", "pediatric"]},
                    "cache_dir": str(tmp / "cache")},
           "preprocess": {"size": 24}, "arms": [{"name": "none"}, {"name": "flip", "classical": "flip"}],
           "classifiers": [{"name": "cnn", "model": "custom-cnn", "config": {"epochs": 1, "batch_size": 8}}],
           "repeats": {"classifier_seeds": 2},
           "metrics": {"image_metrics": False, "bootstrap": 0, "subgroups": ["population"]},
           "tables": [{"title": "Table 1", "regime": "full", "metrics": ["accuracy", "f1"],
                       "rows": {"none": "No augmentation", "flip": "Flips"}}],
           "execution": {"threads": 1, "device": "cpu"}}
    proto = load_protocol(write_protocol(tmp / "p.yaml", raw))
    out = tmp / "out"
    run_study(proto, out)
    return {"out": out, "proto": proto}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_where_keeps_only_the_listed_populations(study: dict[str, Any]) -> None:
    meta = json.loads((study["out"] / "study.json").read_text())
    kept = sum(_population(k) != "unknown" for k in range(PER_CLASS))  # 23 of 30 per class
    for c in ("COVID", "Normal"):
        assert meta["train"][c] + meta["val"][c] + meta["test"][c] == kept
    data = load_study_data(study["proto"], None, None)
    test = data.test[24]
    assert set(image_meta_column(test, "population")) == {"adult", "pediatric"}


def test_subgroups_csv_is_each_populations_metric_over_the_repeats(study: dict[str, Any]) -> None:
    out = study["out"]
    test = load_study_data(study["proto"], None, None).test[24]
    population = image_meta_column(test, "population").astype(str)
    by_arm: dict[tuple[str, str], list[float]] = {}
    for r in _rows(out / "results.csv"):
        res = json.loads((out / "units" / r["unit"] / "result.json").read_text())
        y_true, y_pred = np.asarray(res["y_true"]), np.asarray(res["y_pred"])
        assert y_true.tolist() == test.labels.tolist()
        for group in ("adult", "pediatric"):
            sel = population == group
            by_arm.setdefault((r["arm"], group), []).append(float((y_true[sel] == y_pred[sel]).mean()))
    rows = {(r["arm"], r["subgroup"]): r for r in _rows(out / "subgroups.csv") if r["metric"] == "accuracy"}
    assert set(rows) == {(a, f"population={g}") for a, g in by_arm}
    for (arm, group), values in by_arm.items():
        row = rows[(arm, f"population={group}")]
        assert int(row["n_test"]) == int((population == group).sum())
        assert int(row["n"]) == 2
        assert float(row["mean"]) == pytest.approx(np.mean(values), abs=1e-6)


def test_tables_md_has_the_published_layout_and_the_summary_numbers(study: dict[str, Any]) -> None:
    out = study["out"]
    summary = {(r["arm"], r["metric"]): r for r in _rows(out / "summary.csv")}
    lines = (out / "tables.md").read_text().splitlines()
    assert lines[0] == "### Table 1"
    assert lines[2] == "| Augmentation pipeline | accuracy | f1 |"
    for arm, label in (("none", "No augmentation"), ("flip", "Flips")):
        cells = []
        for metric in ("accuracy", "f1"):
            s = summary[(arm, metric)]
            sd = float(s["sd"])
            cells.append(f"{float(s['mean']):.3f}" + ("" if math.isnan(sd) else f" ± {sd:.3f}"))
        assert f"| {label} | " + " | ".join(cells) + " |" in lines
    assert any(line.startswith("mean ± sd over 2 repeats") for line in lines)


# ----------------------------------------------------------------------------- loss weighting
def _imageset(counts: dict[str, int], size: int = 16) -> ImageSet:
    labels = np.repeat(np.arange(len(counts)), list(counts.values()))
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, (len(labels), size, size), dtype=np.uint8), labels, list(counts),
                    meta={"preprocess": {"size": size}})


class _Stop(Exception):
    pass


@pytest.mark.parametrize("weighting", ["balanced", "none"])
def test_loss_weights_come_from_the_real_subset_for_every_arm(weighting: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"A": 12, "B": 4}
    proto = validate_protocol({
        "name": "w", "arms": [{"name": "none"}, {"name": "over", "oversample": True,
                                                  "policy": {"mode": "balance"}}],
        "classifiers": [{"name": "cnn", "model": "custom-cnn", "config": {"epochs": 1, "batch_size": 4}}],
        "training": {"loss_weighting": weighting, "add_baselines": False}, "repeats": {"classifier_seeds": 1}})
    proto, _ = complete_arms(proto, list(counts))
    plan = build_plan(proto, DataInfo(fingerprint="f", classes=list(counts), counts={("full", 0): counts}, size=16))
    seen: dict[str, Any] = {}

    def fake_train(aug: ImageSet, val: ImageSet, cfg: Any, device: str) -> None:
        seen["weights"], seen["n_train"] = cfg.class_weights, aug.counts()
        raise _Stop

    monkeypatch.setattr(units, "train_classifier", fake_train)
    train, val = _imageset(counts), _imageset({"A": 2, "B": 2})
    expected = class_weight_tensor(train.labels, 2).tolist() if weighting == "balanced" else False
    for unit in plan.of_kind("classifier"):
        with pytest.raises(_Stop):
            units.run_classifier_unit(unit.spec, train, val, val, threads=1, device="cpu")
        assert seen["weights"] == (pytest.approx(expected) if expected else False)
        assert seen["n_train"] == ({"A": 12, "B": 12} if unit.fields["arm"] == "over" else counts)
