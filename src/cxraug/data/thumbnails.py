"""Thumbnails compared by cosine similarity: the one helper of the near-duplicate audit (:mod:`cxraug.data.audit`),
the memorisation audit's pixel search (:mod:`cxraug.metrics.memorisation`) and Pix2Pix's nearest pairing.

A comparison is ``thumbnails`` -> ``centre_rows`` -> ``unit_rows``: dot products of the rows are then cosine
similarities of mean-centred thumbnails, i.e. Pearson correlations. The three callers were calibrated with
slightly different thumbnails, so the differences are parameters, not hidden in copies:

* ``resample``: ``"area"`` - OpenCV area averaging per image, rounded to uint8 (:func:`cxraug.data.preprocess.resize`;
  the data audit, float32); ``"bilinear"`` - the one resize rule, rounded to uint8 (:func:`cxraug.data.resize.resize_uint8`;
  the memorisation audit, float64); ``"mean"`` - exact block means, not rounded (adaptive average pooling; Pix2Pix,
  float32);
* ``unit_rows``: the norm floored at ``eps``, or with ``add=True`` ``eps`` added to it (the data audit).

``centre_rows`` and ``unit_rows`` take NumPy arrays or torch tensors and compute in that library, so a caller's
numbers do not depend on a conversion.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from cxraug.data.preprocess import resize
from cxraug.data.resize import resize_uint8

Resample = Literal["area", "bilinear", "mean"]
Rows = TypeVar("Rows", np.ndarray, torch.Tensor)


def thumbnails(images: np.ndarray, side: int, resample: Resample) -> np.ndarray:
    """uint8 images (N, S, S) -> float thumbnails (N, side, side) (float64 for ``"bilinear"``, else float32)."""
    images = np.asarray(images)
    if resample == "area":
        if not len(images):
            return np.zeros((0, side, side), np.float32)
        return np.stack([resize(img, side, side) for img in images]).astype(np.float32)
    if resample == "bilinear":
        return resize_uint8(images, side).astype(np.float64)
    if resample == "mean":
        return F.adaptive_avg_pool2d(torch.as_tensor(images).float().unsqueeze(1), side)[:, 0].numpy()
    raise ValueError(f"unknown resample {resample!r} (area, bilinear, mean)")


def centre_rows(x: Rows) -> Rows:
    """Each item flattened to a row, minus the row's mean."""
    x = x.reshape(len(x), -1)
    if isinstance(x, torch.Tensor):
        return x - x.mean(1, keepdim=True)
    return x - x.mean(axis=1, keepdims=True)


def unit_rows(x: Rows, eps: float, *, add: bool = False) -> Rows:
    """Each row divided by its norm, floored at ``eps`` (``add``: ``eps`` added to the norm instead)."""
    if isinstance(x, torch.Tensor):
        norm = x.norm(dim=1, keepdim=True)
        return x / (norm + eps if add else norm.clamp_min(eps))
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / (norm + eps if add else np.maximum(norm, eps))
