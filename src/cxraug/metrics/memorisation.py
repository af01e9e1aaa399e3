"""Memorisation audit: does a generator hand back (near-)copies of its training images?

Public API::

    audit(fake uint8 (M,S,S), train uint8 (N,S,S), heldout=None, *, extractor=None, quantile=0.01,
          margin=0.3, seed=0) -> dict
        {"flagged": int, "fraction_flagged": float, "near_copy": [bool per image], "threshold": {...},
         "nn_index"/"nn_distance": [...] (chosen features), "pixel_nn_index"/"pixel_nn_distance": [...],
         "nn_ssim": [...], "distance_quantiles": {...}, "real_vs_real": {...}, "features": {...}}
    gallery(fake, train, result, path, n=16)           # PNG of the closest (synthetic | training) pairs
    drop_near_copies(fake: ImageSet, train: ImageSet, heldout=None, **audit_options) -> (ImageSet, dict)

For every synthetic image, two searches over the training images: its nearest neighbour by cosine distance in
the chosen features (training images and their horizontal mirrors), and by cosine distance in pixels (32 px,
minus the image mean; mirrors and shifts of -2, 0, 2 px on both axes, so shifted copies are aligned), each
with the pixel SSIM of the matched pair at full size.

The thresholds are calibrated on *real-vs-real* pairs: nearest-neighbour distances (and SSIMs) from held-out
real images to the training images (``heldout``; without it, a random 20% of ``train`` is held out for the
calibration). A synthetic image is a near-copy when a distance is below ``margin`` times the
``quantile``-quantile of the real-vs-real distances of the same search, or its SSIM is above the real-vs-real
SSIM maximum moved ``1 - margin`` of the way towards 1. Independent images from the training distribution are therefore
flagged rarely; copies, mirrored, 2-px shifted, ±10% brightness and resampled copies are flagged (tested).

Without an extractor only the pixel search runs (``features`` then says ``"pixels-32"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cxraug import io
from cxraug.data.imageset import ImageSet
from cxraug.data.thumbnails import centre_rows, thumbnails, unit_rows
from cxraug.errors import CxraugError
from cxraug.metrics.features import FeatureExtractor
from cxraug.metrics.pixel import ssim_per_pair

PIXEL_SIZE = 32


def pixel_features(images: np.ndarray) -> np.ndarray:
    """Images resized to 32 px (antialiased bilinear), flattened, each minus its mean."""
    return centre_rows(thumbnails(images, PIXEL_SIZE, "bilinear"))


def _unit_rows(x: np.ndarray) -> torch.Tensor:
    return unit_rows(torch.as_tensor(x, dtype=torch.float64), 1e-12)


SHIFTS = (-2, 0, 2)  # pixel offsets (both axes) searched by the pixel index


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate by (dy, dx) pixels, repeating the edge."""
    p = max(abs(dy), abs(dx))
    if p == 0:
        return images
    s = images.shape[-1]
    padded = np.pad(images, ((0, 0), (p, p), (p, p)), mode="edge")
    return padded[:, p - dy:p - dy + s, p - dx:p - dx + s]


class _Index:
    """Variants of the training images (mirrors; for pixels also small shifts), searchable by cosine distance."""

    def __init__(self, train: np.ndarray, featurise: Callable[[np.ndarray], np.ndarray], shifts: tuple[int, ...]
                 ) -> None:
        self.variants = [(flip, dy, dx) for flip in (False, True) for dy in shifts for dx in shifts]
        self.train = train
        self.feats = torch.cat([_unit_rows(featurise(self._variant(train, v))).float() for v in self.variants])

    @staticmethod
    def _variant(images: np.ndarray, variant: tuple[bool, int, int]) -> np.ndarray:
        flip, dy, dx = variant
        return np.ascontiguousarray(_shifted(images[:, :, ::-1] if flip else images, dy, dx))

    def query(self, images: np.ndarray, featurise: Callable[[np.ndarray], np.ndarray],
              exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nearest training index, cosine distance, SSIM with that neighbour in its matching variant); ``exclude``:
        per query image a training index whose variants are not searched (-1: none)."""
        q = _unit_rows(featurise(images)).float()
        n = len(self.train)

        def nearest(rows: slice) -> Any:
            sim = q[rows] @ self.feats.T  # columns variant-major: variant v of training image i at v * n + i
            if exclude is not None:
                ex = torch.as_tensor(exclude[rows], dtype=torch.long)
                r = torch.nonzero(ex >= 0).flatten()
                sim.view(len(sim), len(self.variants), n)[r, :, ex[r]] = -float("inf")
            return sim.max(dim=1)

        sims = [nearest(slice(i, i + 256)) for i in range(0, len(q), 256)]  # bounded memory
        best_sim = torch.cat([m.values for m in sims]) if sims else torch.zeros(0)
        best = torch.cat([m.indices for m in sims]).numpy() if sims else np.zeros(0, dtype=np.int64)
        idx, var = best % n, best // n
        matched = np.stack([self._variant(self.train[i:i + 1], self.variants[v])[0] for i, v in zip(idx, var)]) \
            if len(images) else images
        return idx, (1 - best_sim).clamp_min(0).double().numpy(), ssim_per_pair(images, matched)


def _search(reference: np.ndarray, heldout: np.ndarray, train: np.ndarray, fake: np.ndarray,
            featurise: Callable[[np.ndarray], np.ndarray], shifts: tuple[int, ...], quantile: float,
            margin: float, exclude: np.ndarray | None) -> dict[str, Any]:
    """Real-vs-real calibration (held-out -> reference) and the synthetic-vs-training search of one index (built
    once when the reference is the training set itself)."""
    index = _Index(train, featurise, shifts)
    calibration = index if reference is train else _Index(reference, featurise, shifts)
    _, real_d, real_s = calibration.query(heldout, featurise)
    idx, d, s = index.query(fake, featurise, exclude)
    qs = (0.0, 0.01, 0.05, 0.25, 0.5)
    return {"threshold": margin * float(np.quantile(real_d, quantile)), "index": idx, "distance": d, "ssim": s,
            "real_ssim": real_s, "real_quantiles": {str(q): float(np.quantile(real_d, q)) for q in qs},
            "quantiles": {str(q): float(np.quantile(d, q)) for q in qs}}


def audit(fake: np.ndarray, train: np.ndarray, heldout: np.ndarray | None = None, *,
          extractor: FeatureExtractor | None = None, quantile: float = 0.01, margin: float = 0.3,
          seed: int = 0, exclude: np.ndarray | None = None) -> dict[str, Any]:
    """Nearest training image of every synthetic image and the near-copy flags (see the module docstring).
    ``exclude``: per synthetic image a training index left out of its searches (-1: none), e.g. an edit's source;
    the calibration is not affected."""
    fake, train = np.asarray(fake, dtype=np.uint8), np.asarray(train, dtype=np.uint8)
    if fake.shape[1:] != train.shape[1:]:
        raise CxraugError(f"synthetic images {fake.shape[1:]} and training images {train.shape[1:]} differ in size")
    calibration = "held-out images"
    if heldout is None:
        if len(train) < 10:
            raise CxraugError(f"the memorisation audit needs held-out real images or >= 10 training images, "
                              f"got {len(train)}")
        perm = np.random.default_rng(seed).permutation(len(train))
        cut = max(2, len(train) // 5)
        heldout, reference = train[perm[:cut]], train[perm[cut:]]
        calibration = f"{cut} training images held out from the other {len(train) - cut}"
    else:
        heldout, reference = np.asarray(heldout, dtype=np.uint8), train
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
        if exclude.shape != (len(fake),) or exclude.max(initial=-1) >= len(train):
            raise CxraugError(f"exclude must hold one training index (or -1) per synthetic image, got shape "
                              f"{exclude.shape} for {len(fake)} images and {len(train)} training images")
    searches = {"pixels": _search(reference, heldout, train, fake, pixel_features, SHIFTS, quantile, margin,
                                  exclude)}
    if extractor is not None:
        searches["features"] = _search(reference, heldout, train, fake, extractor, (0,), quantile, margin, exclude)
    real_ssim = np.max([r["real_ssim"] for r in searches.values()], axis=0)
    nn_ssim = np.max([r["ssim"] for r in searches.values()], axis=0)
    ssim_thr = float(real_ssim.max() + (1 - margin) * (1 - real_ssim.max()))
    ratios = np.stack([r["distance"] / max(r["threshold"], 1e-12) for r in searches.values()])
    flags = (ratios < 1).any(axis=0) | (nn_ssim > ssim_thr)
    main = searches.get("features", searches["pixels"])
    pix = searches["pixels"]
    return {
        "n_fake": len(fake), "n_train": len(train), "n_calibration": len(heldout), "calibration": calibration,
        "features": extractor.describe() if extractor is not None else {"extractor": f"pixels-{PIXEL_SIZE}"},
        "pixel_search": f"{PIXEL_SIZE} px minus the image mean, cosine distance; training images also mirrored "
                        f"and shifted by {SHIFTS} px on both axes",
        "threshold": {"distance": main["threshold"], "pixel_distance": pix["threshold"], "ssim": ssim_thr,
                      "quantile": quantile, "margin": margin,
                      "rule": "near-copy if a cosine distance < margin x its real-vs-real quantile, or SSIM > "
                              "real-vs-real max SSIM + (1 - margin) x (1 - that max)"},
        "real_vs_real": {"distance_quantiles": main["real_quantiles"],
                         "pixel_distance_quantiles": pix["real_quantiles"], "ssim_max": float(real_ssim.max())},
        "distance_quantiles": main["quantiles"], "pixel_distance_quantiles": pix["quantiles"],
        "nn_index": main["index"].tolist(), "nn_distance": main["distance"].tolist(),
        "pixel_nn_index": pix["index"].tolist(), "pixel_nn_distance": pix["distance"].tolist(),
        "nn_ssim": nn_ssim.tolist(), "closeness": ratios.min(axis=0).tolist(),
        "near_copy": flags.tolist(), "flagged": int(flags.sum()), "fraction_flagged": float(flags.mean()),
    }


def gallery(fake: np.ndarray, train: np.ndarray, result: dict[str, Any], path: str | Path, n: int = 16) -> Path:
    """PNG: the ``n`` closest pairs (distance / threshold, lowest first), one row each: synthetic | training
    neighbour (by features, or by pixels where those are relatively closer)."""
    from PIL import Image, ImageDraw

    order = np.argsort(result["closeness"])[:n]
    s = fake.shape[-1]
    cell = s * max(1, 96 // s)
    canvas = Image.new("L", (2 * cell + 12 + 160, len(order) * (cell + 4) + 4), 0)
    draw = ImageDraw.Draw(canvas)
    for row, i in enumerate(order):
        y = 4 + row * (cell + 4)
        by_pixels = result["pixel_nn_distance"][i] / max(result["threshold"]["pixel_distance"], 1e-12) < \
            result["nn_distance"][i] / max(result["threshold"]["distance"], 1e-12)
        j = result["pixel_nn_index"][i] if by_pixels else result["nn_index"][i]
        for col, img in enumerate((fake[i], train[j])):
            canvas.paste(Image.fromarray(img).resize((cell, cell), Image.NEAREST), (4 + col * (cell + 4), y))
        tag = "NEAR-COPY " if result["near_copy"][i] else ""
        draw.text((2 * cell + 12, y + 2), f"{tag}fake #{i} ~ train #{j}\nd={result['nn_distance'][i]:.4f} "
                  f"pix={result['pixel_nn_distance'][i]:.4f}\nssim={result['nn_ssim'][i]:.3f}", fill=255)
    path = Path(path)
    with io.atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def drop_near_copies(fake: ImageSet, train: ImageSet, heldout: ImageSet | None = None,
                     **audit_options: Any) -> tuple[ImageSet, dict[str, Any]]:
    """The synthetic images that are not near-copies of a training image, and the audit that decided it."""
    result = audit(fake.images, train.images, None if heldout is None else heldout.images, **audit_options)
    keep = ~np.asarray(result["near_copy"], dtype=bool)
    return fake.subset(keep), result
