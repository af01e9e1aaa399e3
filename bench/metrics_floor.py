"""The real-vs-real floor: domain-feature FID, KID and PRDC of real training vs real validation images, per class.

Usage: python bench/metrics_floor.py --root ../shared/data/cxr/dev [--size 64] [--threads 2] [--cache-dir DIR]
(prints JSON). A generator whose synthetic images score near these values against the validation images is as
close to the validation images as other real images are; the test split is never read.

Per class, a random subset of the training images of the same size as the validation class is compared with
the validation images (FID and KID depend on the counts: a synthetic set is compared at the same counts).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from cxraug.data.preprocess import PreprocessConfig
from cxraug.data.splits import load_splits
from cxraug.metrics.encoder import EncoderConfig
from cxraug.metrics.features import get_extractor
from cxraug.metrics.fid import fid_with_ci
from cxraug.metrics.kid import kid
from cxraug.metrics.prdc import prdc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--encoder-epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    splits = load_splits(args.root, preprocess=PreprocessConfig(size=args.size), cache_dir=args.cache_dir)
    extractor = get_extractor("domain", train=splits.train, encoder=EncoderConfig(size=args.size,
                                                                                  epochs=args.encoder_epochs))
    train_f, val_f = extractor(splits.train.images), extractor(splits.val.images)
    rng = np.random.default_rng(args.seed)
    rows = {}
    for c, name in enumerate(splits.train.classes):
        v = val_f[splits.val.labels == c]
        pool = np.flatnonzero(splits.train.labels == c)
        t = train_f[np.sort(rng.choice(pool, min(len(pool), len(v)), replace=False))]
        f, k = fid_with_ci(v, t, n_boot=100, seed=args.seed), kid(v, t, n_boot=100, seed=args.seed)
        rows[name] = {"n_train_subset": len(t), "n_val": len(v), "fid": f["fid"], "fid_ci": f["fid_ci"],
                      "kid": k["kid"], "kid_sd": k["kid_sd"], "kid_ci": k["kid_ci"],
                      "kid_subset_size": k["kid_subset_size"], **prdc(v, t), "warnings": f["warnings"]}
    out = {"root": args.root, "size": args.size, "features": extractor.describe(),
           "split": {"train": splits.train.counts(), "val": splits.val.counts()},
           "per_class": rows, "seconds": round(time.perf_counter() - t0, 1), "threads": args.threads}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
