"""The full image-quality report of synthetic images against real ones (``cxraug evaluate-images``).

Public API::

    load_fake_dir(path, classes=None) -> ImageSet      # manifest.csv (file|path, label), class folders, or flat PNGs
    evaluate_images(real: ImageSet, fake: ImageSet, extractor, *, per_class=False, n_boot=100, k=5,
                    matched_pairs=False, tstr=False, tstr_real_train=None, tstr_config=None, seed=0) -> dict

Every block of the result (``overall``, ``per_class[<name>]``) carries the feature extractor, its dimension,
the image counts and the resize rule next to FID (+ bootstrap CI, small-N warning), KID (mean ± sd over
subsets, bootstrap CI), precision/recall/density/coverage, SSIM/MS-SSIM (pairing stated, scales recorded),
RMSE and SRE. With ``tstr=True`` a classifier trained on the (labelled) synthetic images is tested on the real
set (:mod:`cxraug.metrics.tstr`; ``tstr_real_train`` adds the train-on-real reference). The real set must be
training or validation images, never the test split.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError
from cxraug.data.resize import resize_uint8
from cxraug.metrics.features import FeatureExtractor
from cxraug.metrics.fid import fid_with_ci
from cxraug.metrics.kid import kid
from cxraug.metrics.pixel import pair_up, pixel_metrics
from cxraug.metrics.prdc import prdc

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _decode_all(paths: list[Path]) -> list[np.ndarray]:
    from cxraug.data.decode import SkippedImage, decode_file

    out = []
    for p in paths:
        d = decode_file(p)
        if isinstance(d, SkippedImage):
            raise CxraugError(f"synthetic image {d.path}: {d.reason}")
        out.append(d.pixels)
    return out


def load_fake_dir(path: str | Path, classes: list[str] | None = None) -> ImageSet:
    """Synthetic images from ``path``: ``manifest.csv`` (columns ``file`` or ``path``, and ``label``) as written
    by ``cxraug generate``, else any dataset layout real data may have (Kaggle ``<Class>/images/``, class
    folders, a ``path,label`` CSV; :mod:`cxraug.data.layouts`), else a flat folder of images (unlabelled: label 0,
    class ``"unlabelled"``). ``classes`` (names) fixes the label order. Images must be square and of one size."""
    from cxraug.data.layouts import detect_layout, discover

    root = Path(path)
    if not root.is_dir():
        raise CxraugError(f"synthetic image folder does not exist: {root}")
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        col = "file" if rows and "file" in rows[0] else "path"
        if not rows or col not in rows[0] or "label" not in rows[0]:
            raise CxraugError(f"{manifest} needs columns file (or path) and label")
        files, names = [root / r[col] for r in rows], [r["label"] for r in rows]
    else:
        try:
            layout = detect_layout(root)
        except CxraugError:  # neither class folders nor a manifest CSV: a flat folder of images
            layout = None
        records = discover(root, layout).records if layout else []
        pairs = [(r.path, r.label) for r in records] or [
            (p, "unlabelled") for p in sorted(root.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not pairs:
            raise CxraugError(f"no images in {root} (expected manifest.csv, a dataset layout - Kaggle "
                              "<Class>/images/, class folders, a path,label CSV - or image files)")
        files, names = [p for p, _ in pairs], [n for _, n in pairs]
    from cxraug.data.names import match_class

    order = list(classes) if classes else sorted(set(names))
    labels = np.array([match_class(n, order) for n in names], dtype=np.int64)
    pixels = _decode_all(files)
    shapes = {p.shape for p in pixels}
    if len(shapes) != 1 or next(iter(shapes))[0] != next(iter(shapes))[1]:
        raise CxraugError(f"synthetic images must be square and of one size, found {sorted(shapes)[:3]}")
    return ImageSet(images=np.stack(pixels), labels=labels, classes=order, paths=[str(f) for f in files],
                    synthetic=np.ones(len(files), dtype=bool), meta={"source": str(root)})


def _block(real_f: np.ndarray, fake_f: np.ndarray, real_img: np.ndarray, fake_img: np.ndarray,
           header: dict[str, Any], n_boot: int, k: int, matched: bool, seed: int) -> dict[str, Any]:
    f_idx, r_idx, pairing = pair_up(len(fake_img), len(real_img), matched, seed)
    out = {**header, "n_real": len(real_f), "n_fake": len(fake_f)}
    out.update(fid_with_ci(real_f, fake_f, n_boot=n_boot, seed=seed))
    k_out = kid(real_f, fake_f, n_boot=n_boot, seed=seed)
    out["warnings"] = out["warnings"] + k_out.pop("warnings")
    out.update(k_out)
    out.update(prdc(real_f, fake_f, k=k))
    out.update(pixel_metrics(fake_img[f_idx], real_img[r_idx]))
    out["pairs"] = (f"{pairing}: synthetic image i with real image i" if pairing == "matched"
                    else "random: each synthetic image with a random real image (seeded)")
    return out


def evaluate_images(real: ImageSet, fake: ImageSet, extractor: FeatureExtractor, *, per_class: bool = False,
                    n_boot: int = 100, k: int = 5, matched_pairs: bool = False, tstr: bool = False,
                    tstr_real_train: ImageSet | None = None, tstr_config: Any | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """All image metrics of ``fake`` against ``real`` (see the module docstring)."""
    from cxraug.metrics.tstr import align_classes

    if real.meta.get("split_name") == "test":
        raise CxraugError("image metrics compare with real training or validation images, never the test split")
    if len(real) < 2 or len(fake) < 2:
        raise CxraugError(f"need at least 2 real and 2 synthetic images, got {len(real)} and {len(fake)}")
    resize = "none (same size)"
    if fake.size != real.size:
        resize = f"synthetic {fake.size} px -> {real.size} px, bilinear (antialiased), before every metric"
        fake = ImageSet(images=resize_uint8(fake.images, real.size), labels=fake.labels, classes=fake.classes,
                        paths=fake.paths, synthetic=fake.synthetic, meta=dict(fake.meta))
    desc = extractor.describe()
    header = {"extractor": desc["extractor"], "dims": desc["dims"], "feature_resize": desc["resize"],
              "image_resize": resize}
    real_f, fake_f = extractor(real.images), extractor(fake.images)
    result: dict[str, Any] = {
        "features": desc, "image_size": real.size, "real": {"n": len(real), "counts": real.counts(),
                                                           "split": real.meta.get("split_name", "given")},
        "fake": {"n": len(fake), "counts": fake.counts(), "source": fake.meta.get("source")},
        "overall": _block(real_f, fake_f, real.images, fake.images, header, n_boot, k, matched_pairs, seed),
    }
    labelled = fake.classes != ["unlabelled"]
    if per_class or tstr:
        if not labelled:
            raise CxraugError("per-class metrics and TSTR need labelled synthetic images (manifest or folders)")
        fake = align_classes(fake, real.classes)
    if per_class:
        result["per_class"] = {}
        for c, name in enumerate(real.classes):
            r, f = real.labels == c, fake.labels == c
            if r.sum() >= 2 and f.sum() >= 2:
                result["per_class"][name] = _block(real_f[r], fake_f[f], real.images[r], fake.images[f], header,
                                                   n_boot, k, matched_pairs and r.sum() == f.sum(), seed)
    if tstr:
        from cxraug.metrics.tstr import tstr as run_tstr

        result["tstr"] = run_tstr(fake, real, tstr_real_train, tstr_config)
    return result
