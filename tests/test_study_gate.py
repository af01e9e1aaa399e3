"""The near-copy gate: flagged synthetic images never reach a classifier's training set."""

import numpy as np
import pytest

from cxraug.data.imageset import ImageSet
from cxraug.data.phantom import draw_phantoms
from cxraug.errors import CxraugError
from cxraug.study.units import gate_near_copies

CLASSES = ["COVID", "Normal"]


def _set(seed: int, n: int, synthetic: bool, tag: str) -> ImageSet:
    imgs = np.concatenate([draw_phantoms(c, n, size=32, seed=seed + i)[0] for i, c in enumerate(CLASSES)])
    labels = np.repeat(np.arange(len(CLASSES)), n)
    return ImageSet(imgs, labels, list(CLASSES), paths=[f"{tag}:{k}" for k in range(len(imgs))],
                    synthetic=np.full(len(imgs), synthetic))


def test_gate_drops_copies_and_keeps_the_needed_counts() -> None:
    train, val = _set(0, 30, False, "train"), _set(100, 10, False, "val")
    fresh = _set(200, 12, True, "fresh")
    copies = train.subset(np.r_[0:6, 30:36])  # 6 exact copies of each class's training images, first in line
    copies.synthetic[:] = True
    pool = copies.concat(fresh)
    kept, record = gate_near_copies(pool, train, val, None, {"COVID": 10, "Normal": 8})
    assert record["generated"] == len(pool) and record["dropped"] >= 12
    assert kept.counts() == {"COVID": 10, "Normal": 8}
    assert all(p.startswith("fresh:") for p in kept.paths)


def test_gate_stops_with_the_numbers_when_too_few_survive() -> None:
    train, val = _set(0, 20, False, "train"), _set(100, 10, False, "val")
    copies = train.subset(np.arange(40))
    with pytest.raises(CxraugError, match="near-copy gate: only 0 of the generated 'COVID'"):
        gate_near_copies(copies, train, val, None, {"COVID": 5, "Normal": 5})
