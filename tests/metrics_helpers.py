"""Small synthetic chest-like images for the metrics tests (used until/besides the phantom dataset)."""

from __future__ import annotations

import numpy as np

from cxraug.data.imageset import ImageSet


def draw(label: int, n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size): two dark 'lungs' with smooth texture; label 1 adds bright blobs in the lungs."""
    rng = np.random.default_rng([seed, label])
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        img = 0.75 + 0.05 * rng.standard_normal()
        for side in (-1, 1):
            cx = 0.5 + side * (0.2 + 0.03 * rng.standard_normal())
            cy = 0.5 + 0.04 * rng.standard_normal()
            rx, ry = 0.13 + 0.02 * rng.random(), 0.3 + 0.05 * rng.random()
            lung = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
            img = np.where(lung, 0.25 + 0.05 * rng.standard_normal(), img)
            if label == 1:
                for _ in range(2):
                    bx, by = cx + 0.5 * rx * rng.uniform(-1, 1), cy + 0.5 * ry * rng.uniform(-1, 1)
                    img = img + 0.4 * lung * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * 0.05 ** 2))
        low = rng.standard_normal((size // 4, size // 4))
        tex = np.kron(low, np.ones((4, 4)))[:size, :size]
        img = img + 0.04 * tex + 0.02 * rng.standard_normal((size, size))
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def imageset(n_per_class: int, size: int = 32, seed: int = 0) -> ImageSet:
    """Two-class ImageSet of :func:`draw` images."""
    images = np.concatenate([draw(c, n_per_class, size, seed) for c in (0, 1)])
    labels = np.repeat([0, 1], n_per_class)
    return ImageSet(images=images, labels=labels, classes=["Normal", "COVID"],
                    paths=[f"toy:{seed}:{i}" for i in range(len(images))])
