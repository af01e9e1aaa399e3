"""Classical augmentation policies as torchvision.transforms.v2 transforms, drawn *per image* of a batch.

Inputs are float batches ``(N, C, S, S)`` in [-1, 1] (the classifier's input); outputs keep shape, dtype and
range. Geometric transforms are one affine map per image, sampled with edge replication (``grid_sample``
``padding_mode="border"``: empty areas repeat the edge pixels). Randomness comes from the global torch RNG, so a
training run seeded once is reproducible.

Policies (``magnitude`` in [0, 1] scales every range linearly; 1 is the policy below, 0 the identity):

* ``fedoruk`` (StyleGAN2-ADA study): rotation up to +-5 deg; shift up to +-5 % of the side on each axis;
  stretch between opposite corners up to 5 % (a shear ``x' = x + s*y`` with ``|s| <= 0.05``); zoom
  (isotropic scale) in [0.85, 1.15]; brightness x[0.6, 1.4] on the [0, 1] intensity scale, clipped.
* ``keras`` (Pisa study, Keras ImageDataGenerator; the study gives no magnitudes, these are ours): rotation up
  to +-10 deg, shear ``|s| <= 0.1`` (about 5.7 deg), zoom in [0.9, 1.1], width and height shift up to +-10 %,
  horizontal flip with probability 0.5; edge replication (Keras' default ``fill_mode="nearest"``).
* ``flip``: horizontal flip with probability 0.5 (exactly ``torch.flip(x, [-1])`` on the flipped images).

"Offline" use (:func:`augment_offline`) writes N extra augmented images per class, so that a classical arm adds
as many images as a generative arm.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from cxraug.augment import POLICIES
from cxraug.data.imageset import ImageSet, to_uint8, to_unit
from cxraug.errors import CxraugError


def _uniform(n: int, bound: float) -> torch.Tensor:
    """n draws from U(-bound, bound)."""
    return (torch.rand(n) * 2.0 - 1.0) * bound


class _BatchTransform(v2.Transform):
    """A v2 transform whose parameters are drawn per image of an (N, C, H, W) float batch."""

    def check_inputs(self, flat_inputs: list[Any]) -> None:
        x = flat_inputs[0]
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()):
            raise ValueError("classical policies take float batches (N, C, H, W) in [-1, 1]")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return self.sample(flat_inputs[0].shape[0])

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class RandomAffineBatch(_BatchTransform):
    """Rotation (deg; a positive angle turns the image clockwise as displayed), shift (fraction of the side),
    zoom (scale 1 +- zoom), shear factor; edge replication."""

    def __init__(self, degrees: float = 0.0, translate: float = 0.0, zoom: float = 0.0, shear: float = 0.0) -> None:
        super().__init__()
        self.degrees, self.translate, self.zoom, self.shear = degrees, translate, zoom, shear

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        return {"angle": _uniform(n, self.degrees), "tx": _uniform(n, self.translate),
                "ty": _uniform(n, self.translate), "scale": 1.0 + _uniform(n, self.zoom),
                "shear": _uniform(n, self.shear)}

    def transform(self, inpt: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        n = inpt.shape[0]
        a = params["angle"] * (math.pi / 180.0)
        cos, sin, s = torch.cos(a), torch.sin(a), params["scale"]
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shear = torch.eye(2).repeat(n, 1, 1)
        shear[:, 0, 1] = params["shear"]
        forward = rot @ shear * s.view(n, 1, 1)  # output = forward @ input + shift (normalised coordinates)
        inverse = torch.linalg.inv(forward)
        shift = torch.stack([params["tx"], params["ty"]], -1) * 2.0  # fraction of the side -> [-1, 1] units
        theta = torch.cat([inverse, -(inverse @ shift.unsqueeze(-1))], -1).to(inpt)
        grid = F.affine_grid(theta, list(inpt.shape), align_corners=False)
        return F.grid_sample(inpt, grid, mode="bilinear", padding_mode="border", align_corners=False)


class RandomBrightnessBatch(_BatchTransform):
    """Multiply intensities on the [0, 1] scale by a factor in [1 - delta, 1 + delta], then clip."""

    def __init__(self, delta: float = 0.0) -> None:
        super().__init__()
        self.delta = delta

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        return {"factor": 1.0 + _uniform(n, self.delta)}

    def transform(self, inpt: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        factor = params["factor"].to(inpt).view(-1, 1, 1, 1)
        return ((inpt + 1.0) * factor - 1.0).clamp(-1.0, 1.0)


class RandomHFlipBatch(_BatchTransform):
    """Flip each image left-right with probability p."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        return {"flip": torch.rand(n) < self.p}

    def transform(self, inpt: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        mask = params["flip"].to(inpt.device).view(-1, 1, 1, 1)
        return torch.where(mask, inpt.flip(-1), inpt)


def _check(magnitude: float) -> float:
    if not 0.0 <= magnitude <= 1.0:
        raise CxraugError(f"augmentation magnitude must be in [0, 1], got {magnitude}")
    return magnitude


@POLICIES.register("fedoruk")
def fedoruk(magnitude: float = 1.0) -> v2.Compose:
    """StyleGAN2-ADA study policy (see module docstring)."""
    m = _check(magnitude)
    return v2.Compose([RandomAffineBatch(degrees=5.0 * m, translate=0.05 * m, zoom=0.15 * m, shear=0.05 * m),
                       RandomBrightnessBatch(0.4 * m)])


@POLICIES.register("keras")
def keras(magnitude: float = 1.0) -> v2.Compose:
    """Pisa study policy with our magnitudes (see module docstring)."""
    m = _check(magnitude)
    return v2.Compose([RandomHFlipBatch(0.5 * m),
                       RandomAffineBatch(degrees=10.0 * m, translate=0.1 * m, zoom=0.1 * m, shear=0.1 * m)])


@POLICIES.register("flip")
def flip(magnitude: float = 1.0) -> v2.Compose:
    """Horizontal flip with probability 0.5 * magnitude."""
    return v2.Compose([RandomHFlipBatch(0.5 * _check(magnitude))])


def augment_uint8(policy: v2.Transform, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Apply a policy to uint8 images (N, S, S) -> uint8 (N, S, S)."""
    out = [to_uint8(policy(to_unit(images[i:i + batch_size]))) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else images.copy()


def augment_offline(train: ImageSet, policy: str, n_per_class: int | Mapping[str, int], seed: int = 0,
                    magnitude: float = 1.0) -> ImageSet:
    """Extra augmented copies of the real training images: ``n_per_class`` per class (an int or {class: n}).

    Sources are each class's real (non-synthetic) images, taken in a seeded shuffled order and cycled, so every
    source is used equally often. The result has ``synthetic=False``, the source's patient id, paths
    ``augmented:<policy>:<k>:<source path>`` and ``meta["augmented"] = policy``; concatenate it onto ``train``.
    Reproducible for a seed; the global torch RNG is left untouched.
    """
    transform = POLICIES.get(policy)(magnitude)
    counts = n_per_class if isinstance(n_per_class, Mapping) else {c: n_per_class for c in train.classes}
    rng = np.random.default_rng(seed)
    index: list[int] = []
    for c, name in enumerate(train.classes):
        n = int(counts.get(name, 0))
        pool = np.flatnonzero((train.labels == c) & ~train.synthetic)
        if n and not len(pool):
            raise CxraugError(f"cannot augment class {name!r}: it has no real training images")
        if n:
            order = np.concatenate([rng.permutation(pool) for _ in range(-(-n // len(pool)))])
            index.extend(order[:n].tolist())
    src = train.subset(np.asarray(index, dtype=np.int64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        images = augment_uint8(transform, src.images)
    return ImageSet(images=images, labels=src.labels, classes=list(train.classes), patient_ids=src.patient_ids,
                    paths=[f"augmented:{policy}:{k}:{p}" for k, p in enumerate(src.paths)],
                    synthetic=np.zeros(len(src), dtype=bool), meta={**train.meta, "augmented": policy})
