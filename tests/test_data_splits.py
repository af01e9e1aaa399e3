"""Patient-level splits (property test: no patient in two splits), manifest splits, regimes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxraug.data import ImageSet, apply_regime, assign_splits, split_patients
from cxraug.errors import CxraugError


def _imageset(labels: list[int], patients: list[str], classes: list[str] | None = None) -> ImageSet:
    n = len(labels)
    return ImageSet(images=np.zeros((n, 4, 4), np.uint8), labels=labels,
                    classes=classes or [f"c{i}" for i in range(max(labels) + 1)],
                    patient_ids=np.array(patients, dtype=object), paths=[f"img{i}.png" for i in range(n)])


@settings(max_examples=60, deadline=None)
@given(
    images=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), min_size=1, max_size=120),
    val_frac=st.floats(0.0, 0.4),
    test_frac=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**16),
)
def test_no_patient_in_two_splits(images: list[tuple[int, int]], val_frac: float, test_frac: float,
                                  seed: int) -> None:
    labels = [lab for lab, _ in images]
    patients = [f"p{pid}" for _, pid in images]
    splits = split_patients(_imageset(labels, patients), val_frac, test_frac, seed)
    parts = [set(s.patient_ids) for s in (splits.train, splits.val, splits.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(images)


def test_split_is_stratified_deterministic_and_near_the_fractions() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 900).tolist()
    patients = [f"p{i // 3}-{lab}" for i, lab in enumerate(labels)]
    a = assign_splits(np.array(labels), np.array(patients), 0.2, 0.1, seed=7)
    b = assign_splits(np.array(labels), np.array(patients), 0.2, 0.1, seed=7)
    c = assign_splits(np.array(labels), np.array(patients), 0.2, 0.1, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for k in range(3):
        mine = a[np.array(labels) == k]
        assert abs(np.mean(mine == "test") - 0.1) < 0.03 and abs(np.mean(mine == "val") - 0.2) < 0.03


def test_small_classes_still_reach_val_and_test() -> None:
    labels = [0] * 50 + [1] * 3
    splits = split_patients(_imageset(labels, [f"p{i}" for i in range(53)]), 0.1, 0.1, 0)
    for part in (splits.val, splits.test):
        assert part.counts()["c1"] == 1


def test_manifest_split_is_used_and_crossing_patients_refused() -> None:
    images = _imageset([0, 0, 1, 1], ["a", "b", "c", "d"])
    images.meta["split"] = dict(zip(images.paths, ["train", "test", "val", "train"]))
    splits = split_patients(images)
    assert splits.test.paths == ["img1.png"] and splits.val.paths == ["img2.png"]
    images.patient_ids = np.array(["a", "a", "c", "d"], dtype=object)
    with pytest.raises(CxraugError, match="patient 'a' in more than one split"):
        split_patients(images)


def test_bad_fractions_are_an_error() -> None:
    with pytest.raises(CxraugError, match="sum to < 1"):
        split_patients(_imageset([0, 1], ["a", "b"]), 0.6, 0.5, 0)


def test_n_per_class_draws_are_nested_and_order_independent() -> None:
    labels = [0] * 300 + [1] * 250
    train = _imageset(labels, [f"p{i}" for i in range(550)], ["COVID", "Normal"])
    small = apply_regime(train, n_per_class=50, seed=3)
    large = apply_regime(train, n_per_class=200, seed=3)
    assert small.counts() == {"COVID": 50, "Normal": 50} and large.counts() == {"COVID": 200, "Normal": 200}
    assert set(small.paths) < set(large.paths)
    shuffled = train.subset(np.random.default_rng(1).permutation(len(train)))
    assert set(apply_regime(shuffled, n_per_class=50, seed=3).paths) == set(small.paths)
    assert set(apply_regime(train, n_per_class=50, seed=4).paths) != set(small.paths)
    with pytest.raises(CxraugError, match="class 'Normal' has only 250"):
        apply_regime(train, n_per_class=260)


def test_capped_class_leaves_the_others_untouched() -> None:
    labels = [0] * 300 + [1] * 250
    train = _imageset(labels, [f"p{i}" for i in range(550)], ["COVID", "Normal"])
    capped = apply_regime(train, cap={"covid": 219}, seed=0)
    assert capped.counts() == {"COVID": 219, "Normal": 250}
    assert capped.meta["regime"]["cap"] == {"covid": 219}
