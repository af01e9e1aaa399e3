"""Fréchet distance (FID) between two sets of features, with a bootstrap confidence interval.

Public API::

    frechet_distance(mu1, sigma1, mu2, sigma2) -> float          # closed form for two Gaussians
    fid(real_feats (N,D), fake_feats (M,D)) -> float              # Gaussians fitted to the features
    fid_with_ci(real_feats, fake_feats, n_boot=100, seed=0) -> dict  # {"fid", "fid_ci": [lo, hi], "warnings"}

The bootstrap resamples both sets with replacement. Duplicated rows lower the effective sample size, which
raises FID (it is biased upwards at small N), so the percentile interval is shifted by the bootstrap bias
estimate (mean of the resamples minus the point estimate, reported as ``fid_boot_bias``) to centre it on the
estimate; its width is the resampling spread.

The trace term ``Tr sqrt(S1 S2)`` is computed as the nuclear norm of ``F1 F2^T`` where ``S = F^T F``; ``F`` is
the centred feature matrix when there are fewer samples than dimensions and the symmetric square root of the
covariance otherwise. This is exact, needs no matrix square root of a non-symmetric product, and stays cheap
when N < D (the usual case on small medical sets). It agrees with torchmetrics' ``FrechetInceptionDistance``
on identical features (tested).
"""

from __future__ import annotations

import numpy as np
import torch


def _factor_from_cov(sigma: torch.Tensor) -> torch.Tensor:
    """Symmetric square root ``F`` of a PSD matrix, so that ``sigma = F^T F``."""
    evals, evecs = torch.linalg.eigh((sigma + sigma.T) / 2)
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def _moments(x: torch.Tensor, w: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and a covariance factor ``F`` (cov = F^T F, unbiased) of rows of ``x``, optionally weighted by counts."""
    n, d = x.shape
    w = torch.ones(n, dtype=x.dtype, device=x.device) if w is None else w
    total = w.sum()
    mu = (w[:, None] * x).sum(0) / total
    centred = (x - mu) * (w / (total - 1)).sqrt()[:, None]
    if n <= d:
        return mu, centred
    return mu, _factor_from_cov(centred.T @ centred)


def _distance(mu1: torch.Tensor, f1: torch.Tensor, mu2: torch.Tensor, f2: torch.Tensor) -> float:
    trace_sqrt = torch.linalg.svdvals(f1 @ f2.T).sum()
    value = (mu1 - mu2).square().sum() + f1.square().sum() + f2.square().sum() - 2 * trace_sqrt
    return float(value.clamp_min(0))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})`` for two Gaussians given by mean and covariance."""
    t = [torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in (mu1, sigma1, mu2, sigma2)]
    return _distance(t[0], _factor_from_cov(t[1]), t[2], _factor_from_cov(t[3]))


def _as_features(x: np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    if t.ndim != 2 or len(t) < 2:
        raise ValueError(f"{name} features must be (N >= 2, D), got shape {tuple(t.shape)}")
    return t


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature matrices (rows are images)."""
    r, f = _as_features(real, "real"), _as_features(fake, "fake")
    return _distance(*_moments(r), *_moments(f))


def small_n_warning(n_real: int, n_fake: int, dims: int) -> list[str]:
    """A warning when either set has fewer images than feature dimensions (the covariance is then singular)."""
    if min(n_real, n_fake) < dims:
        return [f"FID with {min(n_real, n_fake)} images < {dims} feature dimensions: the covariance estimate is "
                "rank-deficient and FID is biased upwards; compare FIDs only at equal counts, or use KID"]
    return []


def fid_with_ci(real: np.ndarray, fake: np.ndarray, *, n_boot: int = 100, level: float = 0.95,
                seed: int = 0) -> dict:
    """FID plus a bias-shifted percentile bootstrap interval (both sets resampled ``n_boot`` times)."""
    r, f = _as_features(real, "real"), _as_features(fake, "fake")
    out: dict = {"fid": _distance(*_moments(r), *_moments(f)),
                 "warnings": small_n_warning(len(r), len(f), r.shape[1])}
    if n_boot > 0:
        gen = torch.Generator().manual_seed(seed)
        values = []
        for _ in range(n_boot):
            wr = torch.bincount(torch.randint(len(r), (len(r),), generator=gen), minlength=len(r)).double()
            wf = torch.bincount(torch.randint(len(f), (len(f),), generator=gen), minlength=len(f)).double()
            values.append(_distance(*_moments(r, wr), *_moments(f, wf)))
        alpha = (1 - level) / 2
        bias = float(np.mean(values)) - out["fid"]
        out["fid_ci"] = [max(0.0, float(np.quantile(values, alpha)) - bias), float(np.quantile(values, 1 - alpha))
                         - bias]
        out["fid_boot_bias"] = bias
        out["fid_ci_level"] = level
        out["fid_boot"] = n_boot
    return out
