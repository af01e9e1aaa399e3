"""Study statistics against values computed by hand (and by scikit-learn) on fixed inputs."""

import math

import numpy as np
import pytest

from cxraug.study import stats
from cxraug.study.baselines import Pairing


def test_t_interval_by_hand() -> None:
    # mean 0.85, sd 0.05, t(0.975, 2) = 4.302653 -> half width 4.302653 * 0.05 / sqrt(3) = 0.124207
    s = stats.t_interval([0.8, 0.85, 0.9])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.85) and s["sd"] == pytest.approx(0.05)
    assert s["ci_low"] == pytest.approx(0.85 - 0.124207, abs=1e-6)
    assert s["ci_high"] == pytest.approx(0.85 + 0.124207, abs=1e-6)
    one = stats.t_interval([0.7])
    assert one["mean"] == 0.7 and math.isnan(one["ci_low"]) and math.isnan(one["sd"])


def test_paired_test_by_hand() -> None:
    a, b = [0.90, 0.86, 0.88, 0.91], [0.85, 0.84, 0.86, 0.85]
    # differences 0.05, 0.02, 0.02, 0.06: mean 0.0375, sd 0.020616, t = 0.0375 / (0.020616 / 2) = 3.6380
    r = stats.paired_test(a, b)
    assert r["mean"] == pytest.approx(0.0375)
    assert r["sd"] == pytest.approx(0.0206155, abs=1e-6)
    assert r["t"] == pytest.approx(3.63803, abs=1e-4)
    assert r["p"] == pytest.approx(0.035825, abs=1e-4)  # two-sided, 3 degrees of freedom
    half = 3.182446 * 0.0206155 / 2  # t(0.975, 3)
    assert r["ci_low"] == pytest.approx(0.0375 - half, abs=1e-6)


def test_holm_by_hand() -> None:
    # sorted p 0.01, 0.02, 0.04 with m = 3: 0.03, max(0.03, 0.04) = 0.04, max(0.04, 0.04) = 0.04
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    out = stats.holm([math.nan, 0.01])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.01)


def _rows() -> list[dict]:
    rows = []
    for seed, (none, gen) in enumerate([(0.80, 0.84), (0.82, 0.85), (0.78, 0.83)]):
        rows.append({"regime": "r", "classifier": "c", "arm": "none", "draw": 0, "gen_seed": None,
                     "clf_seed": seed, "accuracy": none})
        for g, shift in ((0, 0.0), (1, 0.02)):
            rows.append({"regime": "r", "classifier": "c", "arm": "gen", "draw": 0, "gen_seed": g,
                         "clf_seed": seed, "accuracy": gen + shift})
    return rows


def test_summarise_names_sources() -> None:
    summary = {s["arm"]: s for s in stats.summarise(_rows(), ["accuracy"])}
    assert summary["none"]["n"] == 3 and summary["gen"]["n"] == 6
    assert summary["none"]["covers"] == "classifier seed x3; training-subset draw x1 (fixed)"
    assert "generator seed x2" in summary["gen"]["covers"]


def test_compare_pairs_and_averages_generator_seeds() -> None:
    (c,) = stats.compare(_rows(), [Pairing("r", "c", "gen", "none", "none", True)], ["accuracy"])
    assert (c["arm"], c["baseline"], c["baseline_role"], c["strongest_baseline"]) == ("gen", "none", "none", True)
    # per pair: mean over generator seeds (gen + 0.01) minus none -> 0.05, 0.04, 0.06
    assert c["n"] == 3 and c["mean"] == pytest.approx(0.05)
    assert c["sd"] == pytest.approx(0.01)
    assert c["p_holm"] == pytest.approx(c["p"])  # one comparison: Holm changes nothing
    assert "averaged within each pair" in c["covers"]


def test_bootstrap_is_paired_and_covers_truth() -> None:
    rng = np.random.default_rng(0)
    yt = rng.integers(0, 2, 300)
    good = np.where(rng.random(300) < 0.9, yt, 1 - yt)
    same = good.copy()
    units = {"a": (yt, good), "b": (yt, same)}
    groups = {("r", "c", "A"): ["a"], ("r", "c", "B"): ["b"]}
    g, p = stats.bootstrap_test(units, groups, [(("r", "c", "A"), ("r", "c", "B"))], 2, resamples=200)
    acc = next(r for r in g if r["group"] == ("r", "c", "A") and r["metric"] == "accuracy")
    assert acc["boot_low"] < np.mean(good == yt) < acc["boot_high"]
    diff = next(r for r in p if r["metric"] == "accuracy")
    assert diff["boot_low"] == diff["boot_high"] == 0.0  # identical predictions: the paired difference is 0
