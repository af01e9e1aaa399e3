"""Curation of synthetic images: keep the ones a judge recognises, that look real, and that cover the class.

Public API::

    Judge.train(train, config=None, cache_dir=None) -> Judge        # trained on the real *training* subset only
    judge.proba(images) -> (N, K); judge.features(images) -> (N, 512); judge.accuracy(val) -> float
    curate_class(draw, need, label, filters, judge, real_features, near_copy=None) -> list[ClassCuration]
    select_diverse(real_features, candidate_features, n, k=5) -> indices
    curate_images(images, labels, classes, filter, judge, real) -> (kept mask, per-class records)

The judge is the domain encoder of :mod:`cxraug.metrics.encoder` (a ResNet-18 classifier and its 512-d
penultimate features) trained on the arm's real training images: when the study's encoder was trained on the
same images with the same settings it is the same file (the cache is keyed by content hash), otherwise one is
trained and cached. It never sees validation or test images; its validation accuracy is recorded so a user sees
whether the judge itself is any good.

Tests, per candidate (each counted on its own in the records, so a candidate can fail several):
``near_copy`` (the memorisation audit's gate, when the generator entry asks for it), ``confidence`` (judge
probability of the intended class >= tau), ``realism`` (inside the k-NN ball of a real training image of the
class in judge features). Candidates that pass every test of a filter are its passing set; ``diversity``
chooses the kept set among them by greedy coverage of the real class, otherwise the first ``need`` in draw order
are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from cxraug.augment.synthetic import CurationFilter
from cxraug.data.imageset import ImageSet
from cxraug.data.resize import resize_uint8
from cxraug.metrics import encoder as enc
from cxraug.metrics.features import DomainExtractor
from cxraug.metrics.prdc import real_ball_membership

#: candidates drawn per chunk are at least this many (small needs still get a useful chunk)
MIN_CHUNK = 16


class Scores(Protocol):
    """What curation needs of a judge (planted judges in tests provide the same)."""

    def proba(self, images: np.ndarray) -> np.ndarray: ...

    def features(self, images: np.ndarray) -> np.ndarray: ...


@dataclass
class Judge:
    """A classifier trained on the real training images, with its penultimate features."""

    classifier: Any  # cxraug.classifiers.train.TrainedClassifier
    extractor: DomainExtractor
    record: dict[str, Any]

    @classmethod
    def train(cls, train: ImageSet, config: enc.EncoderConfig | None = None,
              cache_dir: str | Path | None = None) -> "Judge":
        """The judge of ``train`` (real images only; loaded from the encoder cache when its hash matches)."""
        real = train.subset(np.flatnonzero(~train.synthetic))
        model, record = enc.load_or_train_encoder(real, config, cache_dir)
        extractor = DomainExtractor(model.model, model.model.num_features, model.size, "cpu",
                                    {"hash": record["hash"], "weights": record.get("path")})
        return cls(model, extractor, record)

    def proba(self, images: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(resize_uint8(images, self.classifier.size), device="cpu")

    def features(self, images: np.ndarray) -> np.ndarray:
        return self.extractor(images)

    def accuracy(self, val: ImageSet) -> float:
        """Accuracy on real labelled images (the study's validation set); nan without any."""
        if not len(val):
            return math.nan
        return float((self.proba(val.images).argmax(1) == val.labels).mean())


def confidence_pass(proba: np.ndarray, label: int, tau: float) -> np.ndarray:
    """Candidates whose judge probability of ``label`` is >= ``tau``."""
    return np.asarray(proba)[:, label] >= tau


def realism_pass(real_features: np.ndarray, features: np.ndarray, k: int) -> np.ndarray:
    """Candidates inside the k-NN ball of at least one real image (k lowered to the real count - 1)."""
    k = int(min(k, len(real_features) - 1))
    if k < 1:
        return np.ones(len(features), dtype=bool)
    return real_ball_membership(real_features, features, k).any(axis=0)


def select_diverse(real_features: np.ndarray, candidate_features: np.ndarray, n: int, k: int = 5) -> np.ndarray:
    """``n`` candidate indices chosen greedily to cover the real images' k-NN balls (k-center selection).

    Each pick takes the candidate that covers the most real images not yet covered; once nothing new can be
    covered (or on ties) the candidate farthest from those already picked wins (farthest-point selection).
    """
    m = len(candidate_features)
    if n >= m:
        return np.arange(m)
    k = int(max(1, min(k, len(real_features) - 1)))
    covers = real_ball_membership(real_features, candidate_features, k) if len(real_features) > 1 else \
        np.zeros((len(real_features), m), dtype=bool)
    cand = np.asarray(candidate_features, dtype=np.float64)
    covered = np.zeros(len(real_features), dtype=bool)
    nearest = np.full(m, np.inf)  # distance of every candidate to the closest one picked
    chosen: list[int] = []
    free = np.ones(m, dtype=bool)
    for _ in range(n):
        gain = np.where(free, covers[~covered].sum(axis=0), -1)
        spread = np.where(free, nearest, -np.inf)
        best = np.flatnonzero(gain == gain.max())
        pick = int(best[np.argmax(spread[best])])
        chosen.append(pick)
        free[pick] = False
        covered |= covers[:, pick]
        nearest = np.minimum(nearest, np.linalg.norm(cand - cand[pick], axis=1))
    return np.asarray(chosen, dtype=np.int64)


@dataclass
class ClassCuration:
    """One filter's outcome for one class: ``kept`` indexes the candidate stream, ``record`` has the counts."""

    kept: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Stream:
    """Scored candidates of one class, in draw order."""

    images: list[np.ndarray] = field(default_factory=list)
    proba: list[np.ndarray] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    near_copy: list[np.ndarray] = field(default_factory=list)

    def add(self, images: np.ndarray, judge: Scores, near_copy: Callable[[np.ndarray], np.ndarray] | None) -> None:
        self.images.append(images)
        self.proba.append(judge.proba(images))
        self.features.append(judge.features(images))
        self.near_copy.append(near_copy(images) if near_copy is not None else np.zeros(len(images), dtype=bool))

    def __len__(self) -> int:
        return sum(len(x) for x in self.images)

    def tests(self, f: CurationFilter, label: int, real_features: np.ndarray, first: int = 0) -> dict[str, np.ndarray]:
        """Per test, a bool array over the candidates of chunks ``first`` onwards: does each pass. A test looks at
        one candidate at a time, so chunks can be tested as they arrive."""
        out = {"near_copy": ~np.concatenate(self.near_copy[first:])}
        if f.confidence is not None:
            out["confidence"] = confidence_pass(np.concatenate(self.proba[first:]), label, f.confidence)
        if f.realism is not None:
            out["realism"] = realism_pass(real_features, np.concatenate(self.features[first:]), f.realism)
        return out


def _wanted(f: CurationFilter, need: int) -> int:
    return math.ceil(need * f.diversity_pool) if f.diversity else need


def curate_class(draw: Callable[[int, int], np.ndarray], need: int, label: int, filters: Sequence[CurationFilter],
                 judge: Scores, real_features: np.ndarray,
                 near_copy: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, list[ClassCuration]]:
    """Draw candidates of class ``label`` in chunks (``draw(round, n)`` -> uint8 images) until every filter has
    what it needs or has seen ``max_draw x need`` candidates; returns (candidate images, one result per filter).

    Each filter judges only the candidates drawn up to the chunk at which it was satisfied (its own prefix of the
    stream), so its result does not depend on which other filters share the stream.
    """
    chunk = max(need, MIN_CHUNK)
    stream = _Stream()
    prefix: dict[int, int] = {}
    tested: list[dict[str, list[np.ndarray]]] = [{} for _ in filters]  # per filter and test, one array per chunk
    rnd = 0
    while len(prefix) < len(filters):
        stream.add(draw(rnd, chunk), judge, near_copy)
        rnd += 1
        for i, f in enumerate(filters):
            if i in prefix:
                continue
            for k, v in stream.tests(f, label, real_features, first=rnd - 1).items():
                tested[i].setdefault(k, []).append(v)
            passed = np.logical_and.reduce([np.concatenate(v) for v in tested[i].values()]).sum()
            if passed >= _wanted(f, need) or len(stream) >= f.max_draw * need:
                prefix[i] = len(stream)
    images = np.concatenate(stream.images)
    feats = np.concatenate(stream.features)
    results = []
    for i, f in enumerate(filters):
        n = prefix[i]
        tests = {k: np.concatenate(v) for k, v in tested[i].items()}
        passing = np.flatnonzero(np.logical_and.reduce(list(tests.values())))
        if f.diversity and len(passing) > need:
            kept = passing[select_diverse(real_features, feats[passing], need, f.realism or 5)]
        else:
            kept = passing[:need]
        record = {"drawn": n, "passed": int(len(passing)), "kept": int(len(kept)), "needed": need,
                  "kept_fraction": len(kept) / n, "not_selected": int(len(passing) - len(kept)),
                  **{f"rejected_{k}": int((~v).sum()) for k, v in tests.items()}, "short": len(kept) < need}
        results.append(ClassCuration(kept, record))
    return images, results


def curate_images(images: np.ndarray, labels: np.ndarray, classes: list[str], f: CurationFilter, judge: Scores,
                  real: ImageSet) -> tuple[np.ndarray, dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Apply one filter to a fixed set of labelled synthetic images (no drawing): (kept mask, per-class record,
    per-image columns: the judge's probability of the label and whether each test passed). With ``diversity``
    every passing image is kept (there is no count to choose for)."""
    keep = np.zeros(len(images), dtype=bool)
    detail = {"probability": np.full(len(images), np.nan)}
    records = {}
    for li, c in enumerate(classes):
        members = np.flatnonzero(labels == li)
        if not len(members):
            continue
        stream = _Stream()
        stream.add(np.asarray(images)[members], judge, None)
        tests = stream.tests(f, li, judge.features(real.of_class(c).images))
        tests.pop("near_copy")
        passing = np.logical_and.reduce([np.ones(len(members), dtype=bool), *tests.values()])
        keep[members[passing]] = True
        detail["probability"][members] = stream.proba[0][:, li]
        for k, v in tests.items():
            detail.setdefault(f"pass_{k}", np.zeros(len(images), dtype=bool))[members] = v
        records[c] = {"drawn": len(members), "kept": int(passing.sum()), "kept_fraction": float(passing.mean()),
                      **{f"rejected_{k}": int((~v).sum()) for k, v in tests.items()}}
    return keep, records, detail
