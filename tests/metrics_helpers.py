"""Phantom image sets for the metrics tests."""

from __future__ import annotations

import numpy as np

from cxraug.data.imageset import ImageSet
from cxraug.data.phantom import draw_phantoms

CLASSES = ["Normal", "COVID"]


def phantoms(n_per_class: int, size: int = 32, seed: int = 0, classes: list[str] = CLASSES) -> ImageSet:
    """An ImageSet of ``n_per_class`` phantoms per class (severity 1: classes well separated)."""
    images = np.concatenate([draw_phantoms(c, n_per_class, size, seed, severity=1.0)[0] for c in classes])
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    return ImageSet(images=images, labels=labels, classes=list(classes),
                    paths=[f"phantom:{seed}:{i}" for i in range(len(images))])
