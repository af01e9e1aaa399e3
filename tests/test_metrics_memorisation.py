"""Memorisation audit: planted copies are found, fresh samples are not, near-copies can be dropped."""

import numpy as np
import pytest
from metrics_helpers import phantoms

from cxraug.data.imageset import ImageSet
from cxraug.metrics.memorisation import audit, drop_near_copies, gallery
from cxraug.data.resize import resize_uint8

SIZE = 64


def _variants(src: np.ndarray) -> dict[str, np.ndarray]:
    bright = lambda f: np.clip(src.astype(float) * f, 0, 255).astype(np.uint8)  # noqa: E731
    return {
        "exact": src,
        "flipped": src[:, :, ::-1].copy(),
        "shifted 2 px": np.roll(src, (2, -2), axis=(1, 2)),
        "+10% brightness": bright(1.1),
        "-10% brightness": bright(0.9),
        "resampled": resize_uint8(resize_uint8(src, SIZE * 3 // 4), SIZE),
    }


@pytest.fixture(scope="module")
def data() -> tuple[ImageSet, ImageSet, ImageSet]:
    return phantoms(30, SIZE, seed=0), phantoms(10, SIZE, seed=1), phantoms(20, SIZE, seed=2)


def test_audit_flags_planted_copies_and_not_fresh_samples(data, tmp_path) -> None:
    train, heldout, fresh = data
    sources = np.array([0, 7, 31, 50])
    planted = _variants(train.images[sources])
    fake = np.concatenate([fresh.images, *planted.values()])
    res = audit(fake, train.images, heldout.images)
    flags = np.asarray(res["near_copy"])
    assert not flags[:len(fresh)].any(), np.asarray(res["pixel_nn_distance"])[:len(fresh)].min()
    for k, name in enumerate(planted):
        part = slice(len(fresh) + 4 * k, len(fresh) + 4 * (k + 1))
        assert flags[part].all(), name
        if name != "shifted 2 px":  # a shifted copy is matched in pixels, at some offset
            assert (np.asarray(res["pixel_nn_index"])[part] == sources).all(), name
    assert res["flagged"] == 24 and res["features"]["extractor"] == "pixels-32"
    png = gallery(fake, train.images, res, tmp_path / "closest.png", n=6)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drop_near_copies_keeps_only_fresh_images(data) -> None:
    train, heldout, fresh = data
    copies = train.subset(np.arange(5))
    fake = fresh.concat(ImageSet(images=copies.images[:, :, ::-1].copy(), labels=copies.labels,
                                 classes=copies.classes, synthetic=np.ones(5, bool)))
    kept, res = drop_near_copies(fake, train)  # calibrated on a part of the training set held out
    assert len(kept) == len(fresh) and not kept.synthetic.any()
    assert res["calibration"].startswith("12 training images held out")
