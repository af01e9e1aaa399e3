"""ImageSet: the one in-memory currency of cxraug.

Images live in *preprocessed space*: uint8 arrays of shape (N, S, S), one channel, already
cropped/CLAHE'd/resized. Models see them as float tensors in [-1, 1] (:func:`to_unit`).
Synthetic images enter the same space and are marked ``synthetic=True``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch


def to_unit(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S) or (N, 1, S, S) -> float32 tensor (N, 1, S, S) in [-1, 1]."""
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    return t.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float tensor in [-1, 1], (N, 1, S, S) or (N, S, S) -> uint8 numpy (N, S, S); values are clamped."""
    x = x.detach().float().cpu()
    if x.ndim == 4:
        x = x[:, 0]
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy()


@dataclass
class ImageSet:
    """Preprocessed images with labels, patient groups and provenance."""

    images: np.ndarray  # uint8 (N, S, S)
    labels: np.ndarray  # int64 (N,)
    classes: list[str]  # index -> class name
    patient_ids: np.ndarray = None  # type: ignore[assignment]  # str (N,); defaults to one patient per image
    paths: list[str] = None  # type: ignore[assignment]  # source file, or "synthetic:<generator>:<k>"
    synthetic: np.ndarray = None  # type: ignore[assignment]  # bool (N,)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"data": "phantom", "preprocess": {...}}

    def __post_init__(self) -> None:
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        if self.images.ndim != 3:
            raise ValueError(f"images must be (N, S, S) uint8, got shape {self.images.shape}")
        n = len(self.images)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(n)
        if self.paths is None:
            self.paths = [f"image:{i}" for i in range(n)]
        if self.patient_ids is None:
            self.patient_ids = np.asarray(self.paths, dtype=object)
        self.patient_ids = np.asarray(self.patient_ids, dtype=object).reshape(n)
        if self.synthetic is None:
            self.synthetic = np.zeros(n, dtype=bool)
        self.synthetic = np.asarray(self.synthetic, dtype=bool).reshape(n)
        if len(self.paths) != n:
            raise ValueError("paths and images differ in length")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def counts(self) -> dict[str, int]:
        """Images per class name (every class listed, zeros included)."""
        bc = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(bc[i]) for i, c in enumerate(self.classes)}

    def subset(self, index: Sequence[int] | np.ndarray) -> "ImageSet":
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=list(self.classes),
            patient_ids=self.patient_ids[idx],
            paths=[self.paths[i] for i in idx],
            synthetic=self.synthetic[idx],
            meta=dict(self.meta),
        )

    def of_class(self, name: str) -> "ImageSet":
        return self.subset(self.labels == self.classes.index(name))

    def concat(self, other: "ImageSet") -> "ImageSet":
        if list(other.classes) != list(self.classes):
            raise ValueError(f"class lists differ: {self.classes} vs {other.classes}")
        if other.size != self.size:
            raise ValueError(f"image sizes differ: {self.size} vs {other.size}")
        return ImageSet(
            images=np.concatenate([self.images, other.images]),
            labels=np.concatenate([self.labels, other.labels]),
            classes=list(self.classes),
            patient_ids=np.concatenate([self.patient_ids, other.patient_ids]),
            paths=list(self.paths) + list(other.paths),
            synthetic=np.concatenate([self.synthetic, other.synthetic]),
            meta=dict(self.meta),
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(float images in [-1, 1] of shape (N, 1, S, S), int64 labels)."""
        return to_unit(self.images), torch.as_tensor(self.labels)


@dataclass
class Splits:
    """Patient-level train/val/test splits of one dataset."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"path", "reason"}]


def data_fingerprint(train: ImageSet) -> str:
    """SHA-256 of the images, labels and class names (order-sensitive)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(train.images).tobytes())
    h.update(np.ascontiguousarray(train.labels).tobytes())
    h.update(json.dumps(list(train.classes)).encode())
    h.update(str(train.images.shape).encode())
    return h.hexdigest()
