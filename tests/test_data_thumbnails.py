"""The one thumbnail-cosine helper (cxraug.data.thumbnails) and the numbers of its three callers, pinned to the
formulas each used before they shared it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxraug.data import audit
from cxraug.data.preprocess import resize
from cxraug.data.resize import resize_uint8
from cxraug.data.thumbnails import centre_rows, thumbnails, unit_rows
from cxraug.generators import pix2pix
from cxraug.metrics import memorisation


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(3)
    smooth = np.cumsum(rng.normal(0, 8, (12, 48, 48)), axis=2)
    return np.clip(smooth - smooth.min() + rng.normal(0, 5, smooth.shape), 0, 255).astype(np.uint8)


def test_resample_modes() -> None:
    img = np.zeros((1, 4, 4), np.uint8)
    img[0, 0, 0] = 101  # block means 25.25 and 0 at 2 x 2
    np.testing.assert_array_equal(thumbnails(img, 2, "mean")[0], [[25.25, 0.0], [0.0, 0.0]])  # exact
    np.testing.assert_array_equal(thumbnails(img, 2, "area")[0], [[25.0, 0.0], [0.0, 0.0]])  # rounded to uint8
    assert thumbnails(img, 2, "area").dtype == np.float32 and thumbnails(img, 2, "bilinear").dtype == np.float64
    np.testing.assert_array_equal(thumbnails(img, 2, "bilinear")[0], resize_uint8(img, 2)[0])
    assert thumbnails(img[:0], 2, "area").shape == (0, 2, 2)
    with pytest.raises(ValueError, match="resample"):
        thumbnails(img, 2, "nearest")  # type: ignore[arg-type]


@pytest.mark.parametrize("as_torch", [False, True])
def test_dot_products_of_centred_unit_rows_are_pearson_correlations(images: np.ndarray, as_torch: bool) -> None:
    x = thumbnails(images, 16, "mean").astype(np.float64)
    rows = unit_rows(centre_rows(torch.as_tensor(x) if as_torch else x), 1e-12)
    assert isinstance(rows, torch.Tensor) is as_torch
    rows = np.asarray(rows)
    np.testing.assert_allclose(rows @ rows.T, np.corrcoef(x.reshape(len(x), -1)), atol=1e-12)
    flat = np.zeros((1, 4))
    assert np.all(unit_rows(centre_rows(flat), 1e-6) == 0)  # a constant image: no division by zero
    np.testing.assert_allclose(unit_rows(np.array([[3.0, 4.0]]), 1.0, add=True), [[3 / 6, 4 / 6]])  # norm + eps
    np.testing.assert_allclose(unit_rows(np.array([[3.0, 4.0]]), 1.0), [[0.6, 0.8]])
    np.testing.assert_allclose(unit_rows(np.array([[0.3, 0.4]]), 1.0), [[0.3, 0.4]])  # norm 0.5 floored at 1
    np.testing.assert_allclose(unit_rows(torch.tensor([[0.3, 0.4]]), 1.0, add=True), [[0.2, 0.4 / 1.5]])


def test_the_data_audit_keeps_its_numbers(images: np.ndarray) -> None:
    thumbs = np.stack([resize(img, 32, 32) for img in images]).astype(np.float32)
    np.testing.assert_array_equal(audit._thumbnails(images), thumbs)
    x = thumbs.reshape(len(thumbs), -1)
    x = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_array_equal(audit._zscore(thumbs), x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6))


def test_the_memorisation_pixel_search_keeps_its_numbers(images: np.ndarray) -> None:
    x = resize_uint8(images, 32).reshape(len(images), -1).astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_array_equal(memorisation.pixel_features(images), x)
    t = torch.as_tensor(x, dtype=torch.float64)
    assert torch.equal(memorisation._unit_rows(x), t / t.norm(dim=1, keepdim=True).clamp_min(1e-12))


def test_pix2pix_pairing_keeps_its_numbers(images: np.ndarray) -> None:
    x = F.adaptive_avg_pool2d(torch.as_tensor(images).float().unsqueeze(1), 16).flatten(1)
    x = x - x.mean(1, keepdim=True)
    assert torch.equal(pix2pix._thumbnail_features(images), x / x.norm(dim=1, keepdim=True).clamp_min(1e-6))
