"""The edit audit: an edit close to its own source is not a near-copy; an edit that copies another training
image is; the distance to the source is reported apart from the distance to the others."""

import numpy as np
import pytest
from metrics_helpers import phantoms

from cxraug.errors import CxraugError
from cxraug.metrics.edit_audit import audit_edits
from cxraug.metrics.memorisation import audit


def test_edits_are_measured_against_their_source_and_flagged_against_the_others():
    train = phantoms(15, size=32, seed=0).images
    held = phantoms(6, size=32, seed=4).images
    fresh = phantoms(2, size=32, seed=8).images[:3]
    # edit 0-2: its own source unchanged; edit 3: a copy of training image 7 claiming source 2;
    # edits 4-6: new images (attributed to sources 10-12)
    edits = np.concatenate([train[[0, 1, 2]], train[[7]], fresh])
    sources = np.array([0, 1, 2, 2, 10, 11, 12])
    res = audit_edits(edits, sources, train, held)
    flags = np.asarray(res["near_copy"])
    assert not flags[:3].any(), res  # resembling its source is what an edit is for
    assert flags[3], res  # a copy of another training image is still a near-copy
    src = np.asarray(res["source_distance"])
    assert np.allclose(src[:3], 0, atol=1e-9) and src[3] > 0.01
    other = np.asarray(res["other_distance"])
    assert other[3] < 1e-6 < other[:3].min()


def test_excluded_training_images_are_not_searched_and_the_calibration_stays():
    train = phantoms(15, size=32, seed=0).images
    held = phantoms(6, size=32, seed=4).images
    copies = train[[3, 5]]
    plain = audit(copies, train, held)
    assert plain["near_copy"] == [True, True] and plain["pixel_nn_index"] == [3, 5]
    out = audit(copies, train, held, exclude=np.array([3, -1]))
    assert out["near_copy"] == [False, True]  # copy 0 searched without its original; copy 1 as before
    assert out["pixel_nn_index"][0] != 3 and out["nn_index"][0] != 3 and out["pixel_nn_index"][1] == 5
    assert out["threshold"] == plain["threshold"] and out["real_vs_real"] == plain["real_vs_real"]
    with pytest.raises(CxraugError, match="exclude"):
        audit(copies, train, held, exclude=np.array([3]))
