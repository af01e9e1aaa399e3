"""Benchmark: seconds to score 1,000 synthetic vs 1,000 real images at 64 px with the domain encoder on CPU.

Usage: python bench/metrics.py [--n 1000] [--size 64] [--threads 2]   (prints JSON)

Phantom images stand in for both sets; the domain encoder is trained once (1 epoch, not timed) and cached.
Timed (wall and process CPU seconds): the generator-checkpoint scorer (setup = real features, call = fake
features + per-class KID), fake feature extraction alone, and the full metric set on features (FID with
100-resample bootstrap, KID 100 subsets + bootstrap, PRDC).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from cxraug.data.imageset import ImageSet
from cxraug.data.phantom import PHANTOM_CLASSES, draw_phantoms
from cxraug.metrics.encoder import EncoderConfig
from cxraug.metrics.features import get_extractor
from cxraug.metrics.fid import fid_with_ci
from cxraug.metrics.kid import kid
from cxraug.metrics.prdc import prdc
from cxraug.metrics.scorer import make_scorer


def phantom_set(n: int, size: int, seed: int) -> ImageSet:
    per = n // len(PHANTOM_CLASSES)
    images = np.concatenate([draw_phantoms(c, per, size, seed)[0] for c in PHANTOM_CLASSES])
    return ImageSet(images=images, labels=np.repeat(np.arange(len(PHANTOM_CLASSES)), per),
                    classes=list(PHANTOM_CLASSES))


@contextmanager
def timed(out: dict, name: str) -> Iterator[None]:
    """Record wall seconds and process CPU seconds (all threads) of the block: under a shared, loaded machine the
    CPU seconds are the comparable number."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    out[f"{name}_wall_s"] = round(time.perf_counter() - wall, 2)
    out[f"{name}_cpu_s"] = round(time.process_time() - cpu, 2)
    print(f"{name}: wall {out[f'{name}_wall_s']} s, cpu {out[f'{name}_cpu_s']} s", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    real, fake = phantom_set(args.n, args.size, 0), phantom_set(args.n, args.size, 1)
    cache = os.path.join(tempfile.gettempdir(), "cxraug-bench-encoders")
    t = time.perf_counter()
    extractor = get_extractor("domain", train=real, cache_dir=cache,
                              encoder=EncoderConfig(size=args.size, epochs=1))
    encoder_s = time.perf_counter() - t
    out = {"n_real": len(real), "n_fake": len(fake), "size": args.size, "threads": args.threads,
           "device": "cpu", "cpu": platform.processor() or platform.machine(), "features": extractor.describe(),
           "encoder_seconds_untimed_setup": round(encoder_s, 2)}
    with timed(out, "scorer_setup"):  # real features once (what a generator run pays at its start)
        scorer = make_scorer(real.images, real.labels, extractor, size=args.size, max_real=args.n)
    with timed(out, "scorer_call"):  # one checkpoint: fake features + per-class KID
        out["scorer_kid"] = scorer(fake.images, fake.labels)["kid"]
    with timed(out, "fake_features"):
        fake_f = extractor(fake.images)
    with timed(out, "fid_kid_prdc"):  # on features: FID + 100 bootstraps, KID 100 subsets + 100 bootstraps, PRDC
        f = fid_with_ci(scorer.real, fake_f, n_boot=100)
        k = kid(scorer.real, fake_f, n_boot=100)
        p = prdc(scorer.real, fake_f)
    out.update({"fid": f["fid"], "kid": k["kid"], "coverage": p["coverage"]})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
