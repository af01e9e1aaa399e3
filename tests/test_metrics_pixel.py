"""SSIM, MS-SSIM, RMSE and SRE against scikit-image / torchmetrics references."""

import numpy as np
import pytest
import torch
from metrics_helpers import phantoms

from cxraug.metrics.pixel import ms_ssim_scales, pair_up, pixel_metrics


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    real = phantoms(3, 64, seed=0).images
    rng = np.random.default_rng(0)
    fake = np.clip(real + rng.normal(0, 20, real.shape), 0, 255).astype(np.uint8)
    return fake, real


def test_ssim_agrees_with_scikit_image(pairs) -> None:
    from skimage.metrics import structural_similarity

    fake, real = pairs
    ref = np.mean([structural_similarity(f / 255, r / 255, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False) for f, r in zip(fake, real)])
    out = pixel_metrics(fake, real)
    assert out["ssim"] == pytest.approx(ref, abs=0.01)
    assert 0.1 < out["ssim"] < 0.95


def test_ms_ssim_scales_follow_the_image_size() -> None:
    assert [ms_ssim_scales(s) for s in (11, 16, 32, 64, 128, 256)] == [1, 2, 2, 3, 4, 5]
    small = phantoms(2, 16, seed=0).images
    out = pixel_metrics(small[:2], small[2:])
    assert out["ms_ssim_scales"] == 2 and len(out["ms_ssim_betas"]) == 2 and 0 < out["ms_ssim"] < 1
    assert pixel_metrics(small[:2, :11, :11], small[2:, :11, :11])["ms_ssim_scales"] == 1


def test_ms_ssim_matches_torchmetrics_at_full_scales() -> None:
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (1, 180, 180)).astype(np.uint8)
    real = np.kron(real[:, ::4, ::4], np.ones((4, 4), np.uint8))[:, :176, :176]
    fake = np.clip(real + rng.normal(0, 30, real.shape), 0, 255).astype(np.uint8)
    out = pixel_metrics(fake, real)
    ref = ms_ssim(torch.as_tensor(fake).unsqueeze(1).double() / 255, torch.as_tensor(real).unsqueeze(1).double()
                  / 255, data_range=1.0)
    assert out["ms_ssim_scales"] == 5 and out["ms_ssim"] == pytest.approx(float(ref), rel=1e-9)


def test_identical_images_and_rmse_sre_formulas(pairs) -> None:
    fake, real = pairs
    same = pixel_metrics(real, real)
    assert same["ssim"] == pytest.approx(1.0) and same["ms_ssim"] == pytest.approx(1.0) and same["rmse"] == 0
    assert same["ms_ssim_scales"] == 3 and sum(same["ms_ssim_betas"]) == pytest.approx(1.0)
    f, r = fake / 255, real / 255
    mse = ((f - r) ** 2).mean(axis=(1, 2))
    out = pixel_metrics(fake, real)
    assert out["rmse"] == pytest.approx(np.sqrt(mse).mean())
    assert out["sre_db"] == pytest.approx(np.mean(10 * np.log10(r.mean(axis=(1, 2)) ** 2 / mse)))


def test_pairing_rules() -> None:
    f, r, how = pair_up(5, 9, seed=0)
    assert how == "random" and len(f) == 5 and r.max() < 9
    assert pair_up(3, 3, matched=True)[2] == "matched"
    with pytest.raises(ValueError, match="equal counts"):
        pair_up(3, 4, matched=True)


def test_ssim_per_pair_is_computed_in_bounded_chunks_with_the_same_values(monkeypatch) -> None:
    """Pairs go to torchmetrics a few at a time (its float64 filter takes ~20 MB per 64 px image): every pair keeps
    the value it has alone, in order, across chunk borders."""
    from cxraug.metrics import pixel

    rng = np.random.default_rng(0)
    fake, real = rng.integers(0, 256, (2, 37, 32, 32), dtype=np.uint8)
    alone = np.array([pixel.ssim_per_pair(fake[i:i + 1], real[i:i + 1])[0] for i in range(37)])
    sizes: list[int] = []
    unit = pixel._unit

    def spy(images):
        sizes.append(len(images))
        return unit(images)

    monkeypatch.setattr(pixel, "_unit", spy)
    np.testing.assert_allclose(pixel.ssim_per_pair(fake, real), alone, rtol=0, atol=1e-12)
    assert max(sizes) <= pixel.PAIRS_PER_CALL and sum(sizes) == 2 * 37
    assert len(pixel.ssim_per_pair(fake[:0], real[:0])) == 0
