"""Precision, recall, density and coverage (Naeem et al. 2020) from k-nearest-neighbour balls in feature space.

Public API::

    prdc(real (N,D), fake (M,D), k=5) -> {"precision", "recall", "density", "coverage", "prdc_k"}

* precision: fraction of fake samples inside the k-NN ball of at least one real sample (fidelity);
* recall: fraction of real samples inside the k-NN ball of at least one fake sample (diversity);
* density: mean number of real balls containing each fake sample, divided by k (can exceed 1);
* coverage: fraction of real samples whose ball contains at least one fake sample (mode coverage).

``k`` is lowered to ``min(N, M) - 1`` when a set is smaller than ``k + 1`` (recorded as ``prdc_k``).
"""

from __future__ import annotations

import numpy as np
import torch


def _kth_nn_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of every row to its k-th nearest other row."""
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # the 1st value is the row itself (distance 0)


def real_ball_membership(real: np.ndarray, fake: np.ndarray, k: int) -> np.ndarray:
    """(N real, M fake) bool: fake j lies inside the k-NN ball of real i (radius: i's k-th nearest other real)."""
    x = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    return (torch.cdist(x, y) < _kth_nn_radius(x, k)[:, None]).numpy()


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict:
    """Naeem et al. (2020) precision/recall/density/coverage with Euclidean k-NN radii."""
    x = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    k = int(min(k, len(x) - 1, len(y) - 1))
    if k < 1:
        raise ValueError(f"PRDC needs at least 2 images per set, got {len(x)} real and {len(y)} fake")
    r_real = _kth_nn_radius(x, k)
    r_fake = _kth_nn_radius(y, k)
    d = torch.cdist(x, y)  # (N real, M fake)
    inside_real = d < r_real[:, None]  # fake j inside real ball i
    return {
        "precision": float(inside_real.any(dim=0).double().mean()),
        "recall": float((d < r_fake[None, :]).any(dim=1).double().mean()),
        "density": float(inside_real.double().sum(dim=0).mean() / k),
        "coverage": float(inside_real.any(dim=1).double().mean()),
        "prdc_k": k,
    }
