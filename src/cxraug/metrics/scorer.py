"""Fast checkpoint scoring for generator training: KID (and optionally FID) of a batch of samples against a
fixed real subset whose features are computed once.

Public API::

    make_scorer(real_images uint8 (N,S,S), labels=None, features="domain" | FeatureExtractor, *,
                train=None, metric="kid", max_real=500, size=64, seed=0, **extractor_options) -> Scorer
    scorer(images uint8 (M,S',S'), labels=None) -> {"kid": float, "kid_sd": float, ["fid": float],
                                                   ["precision", "recall", "density", "coverage": float],
                                                   ["kid/<class index>": float, ...]}

``metric`` is ``kid`` or KID joined with ``fid`` and/or ``prdc`` by ``+`` (``kid+fid+prdc``).
    scorer.describe() -> {"extractor", "dims", "resize", "n_real", "size", "metric", ...}

``real_images`` must be training or validation images, never test. Samples are resized to ``size`` (bilinear,
antialiased) before the extractor sees them, so that the score does not depend on the generator's resolution.
With labels, KID is computed per class (``kid/<c>``) and ``kid`` is their mean over the classes present in the
batch. ``features="domain"`` needs the encoder's training split: pass ``train`` (an ImageSet with at least two
classes, typically the whole training fold) or a ready :class:`FeatureExtractor`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError
from cxraug.data.resize import resize_uint8
from cxraug.metrics.features import DEFAULT_EXTRACTOR, FeatureExtractor, get_extractor
from cxraug.metrics.fid import fid
from cxraug.metrics.kid import kid
from cxraug.metrics.prdc import prdc

#: what a scorer can compute besides KID (``metric="kid+fid+prdc"``)
METRICS = ("kid", "fid", "prdc")


class Scorer:
    """Callable ``(images, labels) -> scores`` against precomputed real features."""

    def __init__(self, extractor: FeatureExtractor, real_images: np.ndarray, labels: np.ndarray | None,
                 metric: str, size: int) -> None:
        parts = metric.split("+")
        if parts[0] != "kid" or not set(parts) <= set(METRICS) or len(set(parts)) != len(parts):
            raise CxraugError(f"unknown scorer metric {metric!r}; use kid, optionally joined with fid and/or prdc "
                              "by '+' (kid+fid+prdc)")
        self.extractor = extractor
        self.metric = metric
        self.size = size
        self.real = extractor(resize_uint8(real_images, size))
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        counts = None if self.labels is None else {int(c): int(n) for c, n in
                                                    zip(*np.unique(self.labels, return_counts=True))}
        return {**self.extractor.describe(), "metric": self.metric, "n_real": len(self.real),
                "real_per_class": counts, "size": self.size,
                "resize_to_scorer": f"bilinear (antialiased) to {self.size} px before the extractor"}

    def _score(self, real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
        out = kid(real, fake, n_subsets=20, n_boot=0)
        scores = {"kid": out["kid"], "kid_sd": out["kid_sd"]}
        if "fid" in self.metric.split("+"):
            scores["fid"] = fid(real, fake)
        if "prdc" in self.metric.split("+"):
            scores.update({k: float(v) for k, v in prdc(real, fake).items()})
        return scores

    def __call__(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float]:
        fake = self.extractor(resize_uint8(images, self.size))
        if labels is None or self.labels is None:
            return self._score(self.real, fake)
        labels = np.asarray(labels, dtype=np.int64)
        per_class = {}
        for c in np.unique(labels):
            real_c = self.real[self.labels == c]
            if len(real_c) < 2 or (labels == c).sum() < 2:
                continue
            per_class[int(c)] = self._score(real_c, fake[labels == c])
        if not per_class:
            raise CxraugError("per-class scoring needs at least 2 real and 2 generated images of some class")
        scores = {k: float(np.mean([s[k] for s in per_class.values()])) for k in next(iter(per_class.values()))}
        for c, s in per_class.items():
            scores.update({f"{k}/{c}": v for k, v in s.items()})
        return scores


def _subset(n: int, labels: np.ndarray | None, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of about ``size`` items, each label in proportion (>= 2)."""
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size, replace=False))
    parts = [rng.permutation(np.flatnonzero(labels == c))[:max(2, round(size * np.mean(labels == c)))]
             for c in np.unique(labels)]
    return np.sort(np.concatenate(parts))


def make_scorer(real_images: np.ndarray, labels: np.ndarray | None = None,
                features: str | FeatureExtractor = DEFAULT_EXTRACTOR, *, train: ImageSet | None = None,
                metric: str = "kid", max_real: int = 500, size: int = 64, seed: int = 0,
                **extractor_options: Any) -> Scorer:
    """A :class:`Scorer` against at most ``max_real`` real images (a fixed random subset, stratified by label)."""
    real_images = np.asarray(real_images, dtype=np.uint8)
    if len(real_images) > max_real:
        keep = _subset(len(real_images), None if labels is None else np.asarray(labels), max_real, seed)
        real_images = real_images[keep]
        labels = None if labels is None else np.asarray(labels)[keep]
    extractor = features if isinstance(features, FeatureExtractor) else get_extractor(
        features, train=train, **extractor_options)
    return Scorer(extractor, real_images, labels, metric, size)
