"""The one resize rule of cxraug: bilinear interpolation with antialiasing on intensities 0..255.

Synthetic images reaching a classifier, translation sources reaching a generator, and images reaching a
feature extractor are all resized by it (``torch.nn.functional.interpolate``, ``align_corners=False``,
``antialias=True``), so a metric never depends on which package resized.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, S, S) -> float (B, C, size, size) by the rule above (a float copy when S == size)."""
    x = x.float()
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N,S,S) -> uint8 (N,size,size), rounded and clipped (identity when S == size)."""
    images = np.asarray(images, dtype=np.uint8)
    if images.shape[-1] == size:
        return images
    x = bilinear(torch.as_tensor(images).unsqueeze(1), size)
    return x.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
