"""Kernel Inception Distance (KID): unbiased polynomial-kernel MMD² between two feature sets.

Public API::

    polynomial_kernel(x, y, degree=3, gamma=None, coef=1.0) -> (N, M) array   # (x·y / D + 1) ** 3 by default
    mmd2_unbiased(real, fake) -> float            # on the full sets (Gretton et al. 2012, eq. 3)
    kid(real, fake, subset_size=None, n_subsets=100, n_boot=100, seed=0) -> dict
        {"kid": mean over subsets, "kid_sd": sd over subsets, "kid_subset_size", "kid_subsets",
         "kid_ci": [lo, hi] (bootstrap of the full-set estimate), ...}
    default_subset_size(n_real, n_fake) -> int

Unlike torch-fidelity/torchmetrics defaults (subsets of 1,000, an error below that), the subset size is chosen
from the available counts: half the smaller set, at most 1,000, at least 2. Each subset estimate is unbiased,
so their mean is too; subsets smaller than the sets make the sd over subsets informative.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_IMAGES = 5000  # kernels are precomputed in full; larger sets are subsampled (recorded in the output)


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None,
                      coef: float = 1.0) -> torch.Tensor:
    """``(gamma * x·y + coef) ** degree`` with ``gamma = 1 / D`` by default (the KID kernel)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * x @ y.T + coef) ** degree


def _weighted_mmd2(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor, wx: torch.Tensor,
                   wy: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² with integer weights (multiplicities); pairs of an image with itself are excluded."""

    def within(k: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        num = w @ k @ w - (w.square() * k.diagonal()).sum()
        return num / (w.sum().square() - w.square().sum())

    return within(kxx, wx) + within(kyy, wy) - 2 * (wx @ kxy @ wy) / (wx.sum() * wy.sum())


def _kernels(real: np.ndarray, fake: np.ndarray, degree: int, gamma: float | None,
             coef: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(x)} real and {len(y)} fake")
    k = lambda a, b: polynomial_kernel(a, b, degree, gamma, coef)  # noqa: E731
    return k(x, x), k(y, y), k(x, y)


def mmd2_unbiased(real: np.ndarray, fake: np.ndarray, degree: int = 3, gamma: float | None = None,
                  coef: float = 1.0) -> float:
    """Unbiased MMD² between the full sets under the polynomial kernel."""
    kxx, kyy, kxy = _kernels(real, fake, degree, gamma, coef)
    ones = lambda n: torch.ones(n, dtype=torch.float64)  # noqa: E731
    return float(_weighted_mmd2(kxx, kyy, kxy, ones(len(kxx)), ones(len(kyy))))


def default_subset_size(n_real: int, n_fake: int) -> int:
    """Half the smaller set, capped at 1,000 and at least 2."""
    return int(max(2, min(1000, min(n_real, n_fake) // 2)))


def kid(real: np.ndarray, fake: np.ndarray, *, subset_size: int | None = None, n_subsets: int = 100,
        n_boot: int = 100, level: float = 0.95, seed: int = 0, degree: int = 3) -> dict:
    """KID as mean ± sd of the unbiased MMD² over random subsets, with a bootstrap interval of the full-set value."""
    rng = np.random.default_rng(seed)
    real, fake = np.asarray(real), np.asarray(fake)
    notes = []
    for name, arr in (("real", real), ("fake", fake)):
        if len(arr) > MAX_IMAGES:
            notes.append(f"KID used a random {MAX_IMAGES} of {len(arr)} {name} images")
    real = real[np.sort(rng.choice(len(real), MAX_IMAGES, replace=False))] if len(real) > MAX_IMAGES else real
    fake = fake[np.sort(rng.choice(len(fake), MAX_IMAGES, replace=False))] if len(fake) > MAX_IMAGES else fake
    kxx, kyy, kxy = _kernels(real, fake, degree, None, 1.0)
    n, m = len(real), len(fake)
    size = default_subset_size(n, m) if subset_size is None else int(subset_size)
    if not 2 <= size <= min(n, m):
        raise ValueError(f"KID subset size {size} must be between 2 and the smaller set ({min(n, m)})")
    values = []
    for _ in range(n_subsets):
        wx = torch.zeros(n, dtype=torch.float64)
        wy = torch.zeros(m, dtype=torch.float64)
        wx[torch.as_tensor(rng.choice(n, size, replace=False))] = 1
        wy[torch.as_tensor(rng.choice(m, size, replace=False))] = 1
        values.append(float(_weighted_mmd2(kxx, kyy, kxy, wx, wy)))
    out: dict = {"kid": float(np.mean(values)), "kid_sd": float(np.std(values, ddof=1)) if n_subsets > 1 else 0.0,
                 "kid_subset_size": size, "kid_subsets": n_subsets, "kid_kernel": f"polynomial degree {degree}, "
                 "gamma 1/D, coef 1", "warnings": notes}
    if n_boot > 0:
        boots = []
        for _ in range(n_boot):
            wx = torch.as_tensor(np.bincount(rng.integers(0, n, n), minlength=n), dtype=torch.float64)
            wy = torch.as_tensor(np.bincount(rng.integers(0, m, m), minlength=m), dtype=torch.float64)
            boots.append(float(_weighted_mmd2(kxx, kyy, kxy, wx, wy)))
        alpha = (1 - level) / 2
        out["kid_ci"] = [float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))]
        out["kid_ci_level"] = level
        out["kid_boot"] = n_boot
    return out
