"""The memorisation audit of edits of real images (SDEdit): an edit is *meant* to resemble its source, so its
distance to the source is measured on its own, and near-copies are looked for among the *other* training images.

``audit_edits(edits uint8 (M,S,S), sources int (M,) indices into train, train uint8 (N,S,S), heldout=None, *,
extractor=None, seed=0) -> dict`` runs :func:`cxraug.metrics.memorisation.audit` once with every edit's own
source left out of its searches (``exclude``; the real-vs-real calibration uses every training image).
Returned: ``near_copy`` (near-copies of another training image; per edit), ``flagged``,
``source_distance`` (cosine distance in the audit's 32 px pixel features, edit vs its source) and
``other_distance`` (pixel cosine distance to the nearest other training image, mirrors and shifts searched).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxraug.metrics.features import FeatureExtractor
from cxraug.metrics.memorisation import audit, pixel_features


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return 1.0 - (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)


def audit_edits(edits: np.ndarray, sources: np.ndarray, train: np.ndarray, heldout: np.ndarray | None = None, *,
                extractor: FeatureExtractor | None = None, seed: int = 0) -> dict[str, Any]:
    """Near-copies of other training images and the distances to source and others (module docstring)."""
    edits, train = np.asarray(edits, dtype=np.uint8), np.asarray(train, dtype=np.uint8)
    sources = np.asarray(sources, dtype=np.int64)
    res = audit(edits, train, heldout, extractor=extractor, seed=seed, exclude=sources)
    src = _cosine_distance(pixel_features(edits), pixel_features(train[sources])) if len(edits) else np.zeros(0)
    return {"near_copy": res["near_copy"], "flagged": res["flagged"], "source_distance": src.tolist(),
            "other_distance": res["pixel_nn_distance"], "threshold": res["threshold"],
            "calibration": res["calibration"]}
