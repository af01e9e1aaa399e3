"""Curated generator arms in a study: curated pools, kept fractions, judge accuracy, pretrain-finetune."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from study_tiny import tiny_protocol, write_protocol

from metrics_helpers import phantoms

from cxraug.data.phantom import draw_phantoms
from cxraug.study.protocol import load_protocol
from cxraug.study.specs import GeneratorUnitSpec
from cxraug.study.units import curate_pools
from cxraug.study.runner import run_study

CLASSES = ["COVID", "Normal"]
FILTER = {"confidence": 0.3, "realism": 5, "diversity": True, "max_draw": 3}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curation")
    cache = tmp_path_factory.getbasetemp() / "phantom-cache"
    add = {"mode": "add", "n_per_class": 12}
    raw = tiny_protocol(cache, arms=[
        {"name": "none"},
        {"name": "dcgan", "generator": "dcgan", "policy": add},
        {"name": "dcgan-curated", "generator": "dcgan", "policy": {**add, "filter": FILTER},
         "synthetic_weight": 0.5, "schedule": "pretrain-finetune"},
    ], metrics={"image_metrics": False, "bootstrap": 0, "encoder": {"size": 32, "epochs": 6, "batch_size": 16}},
        repeats={"classifier_seeds": 1})
    out = tmp / "out"
    run_study(load_protocol(write_protocol(tmp / "p.yaml", raw)), out)
    return out


def test_curated_arm_trains_on_its_kept_images_and_says_how_many(curated):
    rows = {r["arm"]: r for r in _rows(curated / "results.csv") if r["kind"] == "classifier"}
    cur = _rows(curated / "curation.csv")
    assert {r["class"] for r in cur} == {"COVID", "Normal"}
    kept = sum(int(r["kept"]) for r in cur)
    drawn = sum(int(r["drawn"]) for r in cur)
    assert all(int(r["kept"]) <= int(r["needed"]) == 12 for r in cur)
    assert all(int(r["drawn"]) <= 3 * 12 + 16 for r in cur)  # max_draw x need, in whole chunks
    assert int(rows["dcgan-curated"]["n_synthetic"]) == kept  # the arm took every kept image, no more
    assert int(rows["dcgan"]["n_synthetic"]) == 24  # the unfiltered arm is untouched
    assert float(rows["dcgan-curated"]["kept_fraction"]) == pytest.approx(kept / drawn, abs=1e-5)
    assert 0 <= float(rows["dcgan-curated"]["judge_accuracy"]) <= 1
    assert rows["dcgan"].get("kept_fraction", "") == ""
    short = [r for r in cur if r["short"] == "True"]
    study = json.loads((curated / "study.json").read_text())
    warned = [w for w in study["fairness"]["warnings"] if w.startswith("curated arm dcgan-curated")]
    assert bool(short) == bool(warned)  # a short arm is never silent
    summary = [r for r in _rows(curated / "summary.csv") if r["arm"] == "dcgan-curated"]
    assert summary and summary[0]["kept_fraction"] != ""


def test_pretrain_finetune_arm_records_both_stages(curated):
    unit = [r for r in _rows(curated / "results.csv") if r.get("arm") == "dcgan-curated"][0]["unit"]
    phases = [r["phase"] for r in _rows(curated / "units" / unit / "history.csv")]
    assert "pretrain" in phases and phases[-1] == "finetune-real"
    plain = [r for r in _rows(curated / "results.csv") if r.get("arm") == "none"][0]
    assert int(_rows(curated / "units" / unit / "history.csv")[-1]["steps"]) == int(plain["budget_steps"])


class PhantomSampler:
    """A planted unconditional generator: phantoms of its class (a new patient per seed)."""

    kind = "unconditional"
    preprocess: dict = {}

    def __init__(self, label: str) -> None:
        self.name, self.classes = "phantom", [label]
        self.config = type("Config", (), {"size": 32})()

    def sample(self, n, label=None, source=None, seed=None):
        return draw_phantoms(self.classes[0], n, size=32, seed=int(seed) % 10_000, severity=1.0)[0]


def test_the_judge_never_sees_validation_images(curated, tmp_path):
    """A canary placed only in validation changes neither the judge (its cache key hashes exactly the images
    it is trained on) nor what the curated pool keeps."""
    gen = _rows(curated / "generators.csv")[0]["unit"]
    spec = GeneratorUnitSpec.model_validate(json.loads((curated / "units" / gen / "result.json").read_text())["spec"])
    train, val = phantoms(12, size=32, seed=0, classes=CLASSES), phantoms(4, size=32, seed=5, classes=CLASSES)
    canary = val.concat(phantoms(3, size=32, seed=9, classes=CLASSES))
    models = {c: PhantomSampler(c) for c in CLASSES}
    a, rec_a = curate_pools(spec, models, train, val, None, str(tmp_path))
    b, rec_b = curate_pools(spec, models, train, canary, None, str(tmp_path))
    (ka,), (kb,) = rec_a.values(), rec_b.values()
    assert ka["judge"]["hash"] == kb["judge"]["hash"] and ka["judge"]["train_counts"] == train.counts()
    assert ka["classes"] == kb["classes"]
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_report_shows_kept_and_rejected_samples_per_class(curated):
    html = (curated / "report.html").read_text()
    assert "Curation f" in html and "kept fraction" in html
    assert html.count('alt="kept COVID"') == 1 and html.count('alt="rejected Normal"') <= 1
    assert 'alt="kept Normal"' in html


def test_a_resumed_study_feeds_curated_arms_from_the_stored_generator_unit(curated, tmp_path):
    """The curated pool and its record come back from disk: re-running a removed curated classifier unit gives
    the same row."""
    import shutil

    before = {r["unit"]: r for r in _rows(curated / "results.csv")}
    unit = next(k for k, r in before.items() if r.get("arm") == "dcgan-curated")
    copy = tmp_path / "out"
    shutil.copytree(curated, copy)
    shutil.rmtree(copy / "units" / unit)
    proto = load_protocol(copy / "protocol.yaml")
    run_study(proto, copy)
    after = {r["unit"]: r for r in _rows(copy / "results.csv")}
    same = {k: v for k, v in before[unit].items() if k != "wall_s"}
    assert {k: v for k, v in after[unit].items() if k != "wall_s"} == same
