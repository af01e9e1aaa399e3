"""A study tracked in MLflow (a temporary local store), read back with MLflow's client."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from study_tiny import tiny_protocol, write_protocol
from typer.testing import CliRunner

from cxraug.cli import app

mlflow = pytest.importorskip("mlflow", reason="MLflow is an extra: pip install 'cxraug[mlflow]'")


def _float(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def test_study_units_are_mlflow_runs_with_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow keeps a local store's artifacts under the working directory
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    raw = tiny_protocol(tmp_path / "cache", repeats={"classifier_seeds": 1}, training={"add_baselines": False})
    proto = write_protocol(tmp_path / "p.yaml", raw)
    out = tmp_path / "out"
    args = ["study", str(proto), "--out", str(out), "--track", "mlflow", "--tracking-uri", uri]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    (study,) = [r for r in runs if r.data.tags.get("cxraug.kind") == "study"]
    units = {r.data.tags["cxraug.unit"]: r for r in runs if "cxraug.unit" in r.data.tags}
    plan = json.loads((out / "plan.json").read_text())
    assert set(units) == {u["key"] for u in plan} and len(runs) == len(plan) + 1
    assert {r.data.tags["mlflow.parentRunId"] for r in units.values()} == {study.info.run_id}
    rows = []
    for name in ("results.csv", "generators.csv"):  # classifier units, generator units
        with open(out / name, newline="") as f:
            rows += list(csv.DictReader(f))
    assert {r["kind"] for r in rows} == {"classifier", "generator"}
    for row in rows:
        run = units[row["unit"]]
        assert run.data.params["arm" if row["kind"] == "classifier" else "generator"] == \
            row["arm" if row["kind"] == "classifier" else "generator"]
        numbers = {k: _float(v) for k, v in row.items() if k not in ("unit", "draw", "clf_seed", "gen_seed")}
        numbers = {k: v for k, v in numbers.items() if v is not None}
        assert numbers, row
        for k, v in numbers.items():
            assert run.data.metrics[k] == pytest.approx(v, rel=1e-5), (row["unit"], k)
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        if row["kind"] == "classifier":
            assert {"confusion.png", "history.csv"} <= files
            assert len(client.get_metric_history(run.info.run_id, "check/val_loss")) == int(row["steps"]) // \
                int(row["eval_every"])
            assert len(client.get_metric_history(run.info.run_id, "val_f1")) == 1  # the restored check's, once
        else:
            grids = [a.path for a in client.list_artifacts(run.info.run_id, "COVID/samples")]
            assert grids and all(p.endswith(".png") for p in grids)
            model = {a.path for a in client.list_artifacts(run.info.run_id, "Normal")}
            assert {"Normal/losses.csv", "Normal/MODEL_CARD.md"} <= model  # no scorer here: no metric-kid.jsonl
    assert {"report.html", "results.csv", "study.json"} <= {a.path for a in client.list_artifacts(study.info.run_id)}

    res = CliRunner().invoke(app, args)  # resumed: nothing new to run, nothing logged twice
    assert res.exit_code == 0, res.output
    assert len(client.search_runs([exp.experiment_id])) == len(runs)


def test_missing_mlflow_is_one_line_with_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    res = CliRunner().invoke(app, ["study", "quickstart", "--out", str(tmp_path), "--track", "mlflow"])
    assert res.exit_code != 0 and "pip install 'cxraug[mlflow]'" in str(res.exception)
