"""Preprocessing: config validation, mask crop with margin, CLAHE, resize; the phantom default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import blob_image
from pydantic import ValidationError

from cxraug.data import PreprocessConfig, load_imageset, preprocess
from cxraug.data.preprocess import mask_box


def test_config_forbids_extra_fields_and_bounds_the_size() -> None:
    with pytest.raises(ValidationError, match="crop"):
        PreprocessConfig(crop=True)
    for bad in (15, 513):
        with pytest.raises(ValidationError, match="size"):
            PreprocessConfig(size=bad)
    assert PreprocessConfig(size=16).size == 16 and PreprocessConfig(size=512).size == 512


@pytest.mark.parametrize("size", [16, 33, 96])
def test_output_is_uint8_square_of_the_requested_size(size: int) -> None:
    out = preprocess(blob_image(0, 32)[:, :24], PreprocessConfig(size=size))
    assert out.shape == (size, size) and out.dtype == np.uint8


def test_mask_box_is_resized_to_the_image_and_grown_by_the_margin() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 10:20] = 255  # in image coordinates (x2 at 40 px): rows 10..30, cols 20..40
    assert mask_box(mask, (40, 40), 0.0) == (10, 30, 20, 40)
    assert mask_box(mask, (40, 40), 0.1) == (8, 32, 18, 40)  # 10% of the 20 px box, clipped at the edge
    assert mask_box(np.zeros((8, 8), np.uint8), (40, 40), 0.1) is None


def test_mask_crop_uses_only_the_boxed_region_and_ignores_empty_masks() -> None:
    image = np.zeros((32, 32), np.uint8)
    image[8:24, 8:24] = 200
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 1  # a 0/1 mask works like 0/255
    cfg = PreprocessConfig(size=16, mask_crop=True, crop_margin=0.0)
    assert np.all(preprocess(image, cfg, mask) == 200)
    assert np.array_equal(preprocess(image, cfg, np.zeros_like(mask)), preprocess(image, PreprocessConfig(size=16)))


def test_clahe_raises_local_contrast() -> None:
    rng = np.random.default_rng(0)
    flat = (100 + rng.integers(0, 12, (64, 64))).astype(np.uint8)  # a low-contrast image
    plain = preprocess(flat, PreprocessConfig(size=64))
    eq = preprocess(flat, PreprocessConfig(size=64, clahe=True, clahe_clip=4.0, clahe_tiles=4))
    assert eq.std() > 2 * plain.std()
    weak = preprocess(flat, PreprocessConfig(size=64, clahe=True, clahe_clip=1.0, clahe_tiles=4))
    assert weak.std() < eq.std()


def test_root_none_loads_the_phantom_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxraug.data import phantom

    small = phantom.write_phantom_dataset(tmp_path / "ph", 3, size=32, seed=0)
    monkeypatch.setattr(phantom, "phantom_root", lambda: small)
    images, skipped = load_imageset(None, preprocess=PreprocessConfig(size=16, mask_crop=True))
    assert images.meta["data"] == "phantom" and skipped == []
    assert sorted(images.classes) == sorted(phantom.PHANTOM_CLASSES) and len(images) == 12
