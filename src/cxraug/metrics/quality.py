"""Image quality of a generator's samples beside the real-vs-real floor, per class (studies, model cards).

``image_metrics(extractor, fake, real_train, real_val, n, k, gallery_dir, seed)`` -> ``{class: {"n", "kid",
"fid", "precision", "recall", "density", "coverage", "floor_*", ["memorised", "memorised_fraction"]}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cxraug.data.imageset import ImageSet


def safe_name(name: str) -> str:
    """``name`` with everything but letters, digits, ``-`` and ``_`` replaced by ``_`` (file names)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def image_metrics(extractor: Any, fake: ImageSet, real_train: ImageSet, real_val: ImageSet, n: int,
                  k: int, gallery_dir: Path | None, seed: int) -> dict[str, dict[str, float]]:
    """Per class: KID, FID and PRDC of ``n`` synthetic images against validation images, beside the
    real-vs-real floor (training-subset images against the same validation images), and - with ``gallery_dir``
    - the memorisation audit of the synthetic images against the training subset (its gallery PNG goes there)."""
    from cxraug.metrics.fid import fid
    from cxraug.metrics.kid import kid
    from cxraug.metrics.prdc import prdc

    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for c in sorted(set(fake.classes[i] for i in np.unique(fake.labels))):
        f, t, v = fake.of_class(c), real_train.of_class(c), real_val.of_class(c)
        m = min(n, len(f), len(t))
        if m < 4 or len(v) < 4:
            continue
        f_img = f.images[np.sort(rng.choice(len(f), m, replace=False))]
        t_img = t.images[np.sort(rng.choice(len(t), m, replace=False))]
        ff, tf, vf = extractor(f_img), extractor(t_img), extractor(v.images)
        row: dict[str, float] = {"n": m}
        for tag, feats in (("", ff), ("floor_", tf)):
            row[f"{tag}kid"] = float(kid(vf, feats, n_boot=0, seed=seed)["kid"])
            row[f"{tag}fid"] = float(fid(vf, feats))
            p = prdc(vf, feats, k=k)
            row.update({f"{tag}{key}": float(p[key]) for key in ("precision", "recall", "density", "coverage")})
        if gallery_dir is not None:
            from cxraug.metrics.memorisation import audit, gallery

            res = audit(f_img, t.images, v.images, extractor=extractor, seed=seed)
            row.update(memorised=float(res["flagged"]), memorised_fraction=float(res["fraction_flagged"]))
            gallery(f_img, t.images, res, gallery_dir / f"memorisation_{safe_name(c)}.png")
        out[c] = row
    return out
