"""Reference generators on phantom data at 20 images per class: the study must tell them apart.

* oracle (new phantoms of the right class) must help at an equal step budget: its paired interval against
  ``none`` lies above 0;
* noise must sit far from the real-vs-real floor in KID and coverage;
* copy (training images handed back) must be flagged by the memorisation audit.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from study_tiny import tiny_protocol, write_protocol

from cxraug.study.protocol import load_protocol
from cxraug.study.runner import run_study

ADD = {"mode": "add", "n_per_class": 150}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _study(tmp_path: Path, generators: tuple[str, ...], **overrides: Any) -> Path:
    raw = tiny_protocol(
        tmp_path / "cache",
        data={"classes": ["COVID", "Normal", "Viral Pneumonia"], "cache_dir": str(tmp_path / "cache")},
        regimes=[{"name": "n20", "n_per_class": 20}],
        arms=[{"name": "none"}] + [{"name": g, "generator": g, "policy": ADD} for g in generators],
        generators={name: {"model": name, "config": {"size": 32}} for name in generators},
        classifiers=[{"name": "cnn", "model": "custom-cnn", "config": {"batch_size": 32}}],
        **overrides,
    )
    out = tmp_path / "out"
    run_study(load_protocol(write_protocol(tmp_path / "p.yaml", raw)), out)
    return out


@pytest.mark.slow
def test_oracle_helps_at_equal_steps(tmp_path: Path) -> None:
    # every arm makes the same 400 steps (at 128 the custom CNN is step-limited and oracle only ties none);
    # the added baselines are not what this test checks
    out = _study(tmp_path, ("oracle",), repeats={"classifier_seeds": 3},
                 training={"max_steps": 400, "eval_every": 20, "add_baselines": False})
    steps = {r["steps"] for r in _csv(out / "results.csv") if r["kind"] == "classifier"}
    assert steps == {"400"}
    comp = {(r["arm"], r["baseline"], r["metric"]): r for r in _csv(out / "comparisons.csv")}
    oracle = comp[("oracle", "none", "accuracy")]
    assert float(oracle["ci_low"]) > 0, oracle
    assert "classifier seed x3" in oracle["covers"]


@pytest.mark.slow
def test_noise_is_far_copy_is_flagged(tmp_path: Path) -> None:
    out = _study(tmp_path, ("oracle", "noise", "copy"), repeats={"classifier_seeds": 1},
                 training={"max_steps": 20, "eval_every": 10, "add_baselines": False},
                 metrics={"image_metrics": True, "samples": 60, "bootstrap": 200,
                          "encoder": {"epochs": 3, "size": 32}})
    gens = {r["generator"]: r for r in _csv(out / "generators.csv")}
    noise, orc, copy = gens["noise"], gens["oracle"], gens["copy"]
    assert float(noise["kid"]) > 10 * max(float(noise["floor_kid"]), 1e-3)
    assert float(noise["coverage"]) < 0.2 < float(noise["floor_coverage"])
    assert float(orc["coverage"]) > 0.5 * float(orc["floor_coverage"])
    assert float(copy["memorised_fraction"]) > 0.5
    assert float(orc["memorised_fraction"]) < 0.1 and float(noise["memorised_fraction"]) < 0.1

    summary = {(r["arm"], r["metric"]): r for r in _csv(out / "summary.csv")}
    assert summary[("noise", "accuracy")]["gen_kid"] == noise["kid"]  # printed beside the arm
    assert "test-image bootstrap x200" in summary[("oracle", "accuracy")]["boot_covers"]
