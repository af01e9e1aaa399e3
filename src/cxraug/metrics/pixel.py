"""Pixel-level similarity between image pairs: SSIM, MS-SSIM (torchmetrics), RMSE and SRE.

Public API::

    pair_up(n_fake, n_real, matched=False, seed=0) -> (fake_idx, real_idx, "matched" | "random")
    ms_ssim_scales(size, kernel_size=11) -> int     # as many scales (<= 5) as torchmetrics allows at this size
    ssim_per_pair(fake, real) -> (N,) array
    pixel_metrics(fake uint8 (N,S,S), real uint8 (N,S,S)) -> {"ssim", "ms_ssim", "ms_ssim_scales",
                                                              "ms_ssim_betas", "rmse", "sre_db", ...}

Images are compared at [0, 1] (uint8 / 255, data range 1). SSIM uses a Gaussian window (sigma 1.5) and is
averaged over the valid region, the border of half a window excluded (as scikit-image and Wang et al. 2004;
torchmetrics' own mean includes the reflect-padded border). MS-SSIM is torchmetrics' with as many scales as
the image size allows (``ms_ssim_scales``; the standard exponents, renormalised when fewer than 5). RMSE is the root mean squared pixel error per pair;
SRE (signal to reconstruction error, Lanaras et al. 2018) is ``10 log10(mean(real)^2 / MSE)`` in dB per pair.
All values are means over the pairs. With unequal or unpaired sets the pairs are random (seeded) and the
output says so: random-pair SSIM measures average similarity, not reconstruction quality.
"""

from __future__ import annotations

import numpy as np
import torch

MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003


def pair_up(n_fake: int, n_real: int, matched: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Index pairs: position-matched (equal counts required) or every fake image with a random real one."""
    if matched:
        if n_fake != n_real:
            raise ValueError(f"matched pairs need equal counts, got {n_fake} fake and {n_real} real")
        return np.arange(n_fake), np.arange(n_real), "matched"
    rng = np.random.default_rng(seed)
    return np.arange(n_fake), rng.integers(0, n_real, n_fake), "random"


def ms_ssim_scales(size: int, kernel_size: int = 11) -> int:
    """Largest number of scales n <= 5 with ``size >= 2**n`` and ``size // max(1, n-1)**2 > kernel_size - 1``
    (torchmetrics' validity rule), and the coarsest scale wider than half the window (its reflect padding)."""
    for n in range(len(MS_SSIM_BETAS), 0, -1):
        if size >= 2**n and size // max(1, n - 1) ** 2 > kernel_size - 1 and size >> (n - 1) > kernel_size // 2:
            return n
    return 0


KERNEL = int(3.5 * 1.5 + 0.5) * 2 + 1  # torchmetrics' Gaussian window for sigma 1.5: 11 px


def _unit(images: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(images)).unsqueeze(1).double() / 255


#: pairs per torchmetrics call: its float64 Gaussian filter unfolds ~20 MB per 64 px image (window x pixels x 5
#: maps x 8 bytes), so 600 pairs at once took 12 GB and two study workers ran out of memory
PAIRS_PER_CALL = 16


def ssim_per_pair(fake: np.ndarray, real: np.ndarray) -> np.ndarray:
    """SSIM of each pair ``(fake[i], real[i])`` of uint8 images, averaged over the valid region (memory bounded:
    :data:`PAIRS_PER_CALL` pairs at a time; each pair's value does not depend on the others)."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    size, pad = fake.shape[-1], KERNEL // 2
    if size <= 2 * pad:
        raise ValueError(f"SSIM needs images larger than {2 * pad} px, got {size}")
    out = [np.zeros(0)]
    for i in range(0, len(fake), PAIRS_PER_CALL):
        _, full = ssim(_unit(fake[i:i + PAIRS_PER_CALL]), _unit(real[i:i + PAIRS_PER_CALL]), data_range=1.0,
                       kernel_size=KERNEL, return_full_image=True)
        out.append(full[..., pad:-pad, pad:-pad].mean(dim=(1, 2, 3)).numpy())
    return np.concatenate(out)


def pixel_metrics(fake: np.ndarray, real: np.ndarray, batch_size: int = PAIRS_PER_CALL) -> dict:
    """SSIM, MS-SSIM, RMSE and SRE over aligned pairs ``(fake[i], real[i])``."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    fake, real = np.asarray(fake), np.asarray(real)
    if fake.shape != real.shape:
        raise ValueError(f"pairs must have equal shapes, got {fake.shape} and {real.shape}")
    scales = ms_ssim_scales(fake.shape[-1], KERNEL)
    betas = MS_SSIM_BETAS if scales == len(MS_SSIM_BETAS) else tuple(
        b / sum(MS_SSIM_BETAS[:scales]) for b in MS_SSIM_BETAS[:scales])  # fewer scales: renormalised to sum 1
    s_vals, m_vals, rmse, sre = [], [], [], []
    for i in range(0, len(fake), batch_size):
        f, r = _unit(fake[i:i + batch_size]), _unit(real[i:i + batch_size])
        s_vals.append(ssim_per_pair(fake[i:i + batch_size], real[i:i + batch_size]))
        if scales:
            m_vals.append(ms_ssim(f, r, data_range=1.0, kernel_size=KERNEL, betas=betas,
                                  reduction="none").numpy())
        mse = (f - r).square().mean(dim=(1, 2, 3))
        rmse.append(mse.sqrt().numpy())
        sre.append((10 * torch.log10(r.mean(dim=(1, 2, 3)).square() / mse.clamp_min(1e-12))).numpy())
    cat = lambda v: np.concatenate(v) if v else np.zeros(0)  # noqa: E731
    s, m, e, q = cat(s_vals), cat(m_vals), cat(rmse), cat(sre)
    return {"ssim": float(s.mean()), "ssim_sd": float(s.std()),
            "ms_ssim": float(m.mean()) if scales else None, "ms_ssim_scales": scales,
            "ms_ssim_betas": [round(b, 6) for b in betas], "ssim_kernel": KERNEL,
            "rmse": float(e.mean()), "sre_db": float(q.mean()), "n_pairs": len(fake),
            "pixel_scale": "uint8 / 255 (data range 1)"}
