"""Calibration of the near-duplicate rule: pairs it finds in a dataset, and its recall on made copies.

Prints one JSON object: the number of near-duplicate pairs in ROOT (and how many join one patient or two
pediatric images when ``metadata.csv`` says so), and for N random images the fraction whose resized,
re-encoded and shifted copies are found.

    .venv/bin/python bench/data_near_duplicates.py --root ../shared/data/cxr/dev --n 200
"""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
from PIL import Image

from cxraug.data import PreprocessConfig, decode_file, image_meta_column, load_imageset, preprocess
from cxraug.data.audit import NEAR_CORR, NEAR_DISTANCE, near_pairs


def _copies(pixels: np.ndarray) -> dict[str, np.ndarray]:
    side = pixels.shape[0]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=60)
    out = {"resized_0.7": np.asarray(Image.fromarray(pixels).resize((int(side * 0.7),) * 2, Image.LANCZOS)),
           "jpeg_q60": np.asarray(Image.open(buf))}
    for frac in (0.008, 0.016, 0.031, 0.047):
        k = max(1, round(frac * side))
        out[f"shift_{frac:.1%}"] = np.pad(pixels, ((k, 0), (k, 0)), mode="edge")[: pixels.shape[0], : pixels.shape[1]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/cxr/dev")
    parser.add_argument("--n", type=int, default=200, help="images whose copies are tested")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    cfg = PreprocessConfig(size=64)
    images, _ = load_imageset(args.root, preprocess=cfg, cache_dir=args.cache_dir)
    pairs = near_pairs(images.images)
    population = image_meta_column(images, "population")
    report = {
        "root": args.root, "images": len(images), "max_distance": NEAR_DISTANCE, "min_corr": NEAR_CORR,
        "pairs": len(pairs),
        "pairs_same_patient": int(sum(images.patient_ids[i] == images.patient_ids[j] for i, j, _ in pairs)),
        "pairs_both_pediatric": int(sum(population[i] == population[j] == "pediatric" for i, j, _ in pairs)),
    }
    found: dict[str, list[bool]] = {}
    for i in np.random.default_rng(0).choice(len(images), min(args.n, len(images)), replace=False):
        original = decode_file(images.paths[i]).pixels  # type: ignore[union-attr]
        copies = _copies(original)
        stack = np.stack([preprocess(original, cfg)] + [preprocess(c, cfg) for c in copies.values()])
        hits = {int(j) for a, j, _ in near_pairs(stack) if a == 0}
        for k, name in enumerate(copies, start=1):
            found.setdefault(name, []).append(k in hits)
    report["recall"] = {name: round(float(np.mean(v)), 3) for name, v in found.items()}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
