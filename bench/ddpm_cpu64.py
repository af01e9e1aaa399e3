"""The ``cpu64`` DDPM preset on CPU: training images/s and sampling and editing images/s at 10, 15 and 25 DDIM
steps (JSON on stdout). BENCHMARKS.md gives the command and the numbers.

Training: ``--train-steps`` timed ``train_step`` calls (batch 32 of 64 px images from ``--data``, or random
images when none is given) after one warm-up step; images/s counts the real images each step consumes.
Sampling: ``sample(--n)``; editing: ``edit`` of ``--n`` real images at ``--strength``; both at each of
``--sample-steps``, after one warm-up call, with ``--threads`` torch threads. Untrained weights: the rates do not
depend on what the network has learnt.

Example: nice python bench/ddpm_cpu64.py --data ../shared/data/cxr/dev --threads 2 --train-steps 20 --n 64 \\
             > runs/bench_ddpm_cpu64.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from cxraug.data.imageset import ImageSet
from cxraug.generators.ddpm import DDPM

CLASSES = ["COVID", "Normal", "Viral Pneumonia"]


def _images(data: str | None, n: int) -> ImageSet:
    if data is None:
        rng = np.random.default_rng(0)
        return ImageSet(images=rng.integers(0, 256, (n, 64, 64), dtype=np.uint8), labels=np.arange(n) % 3,
                        classes=CLASSES)
    from cxraug.data import PreprocessConfig, load_splits

    return load_splits(data, 0.15, 0.15, 0, preprocess=PreprocessConfig(size=64)).train


def _rate(n: int, fn) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset root (default: random 64 px images)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--n", type=int, default=64, help="images sampled / edited per timed call")
    ap.add_argument("--sample-steps", default="10,15,25")
    ap.add_argument("--strength", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = _images(args.data, max(args.n, 64))
    gen = DDPM({"preset": "cpu64"}, classes=list(train.classes))
    batch = gen.config.batch_size

    def train_steps() -> None:
        for _ in range(args.train_steps):
            gen.train_step(gen.next_batch(train))

    out = {"preset": "cpu64", "parameters": sum(p.numel() for p in gen.unet.parameters()),
           "threads": args.threads, "machine": platform.processor() or platform.machine(),
           "torch": torch.__version__, "train_img_s": _rate(args.train_steps * batch, train_steps),
           "sample_img_s": {}, "edit_img_s": {}, "n": args.n, "strength": args.strength}
    images, labels = train.images[:args.n], train.labels[:args.n]
    for k in (int(v) for v in args.sample_steps.split(",")):
        gen.config.sample_steps = k
        out["sample_img_s"][k] = _rate(args.n, lambda: gen.sample(args.n, label=labels, seed=0))
        out["edit_img_s"][k] = _rate(args.n, lambda k=k: gen.edit(images, labels, args.strength, steps=k, seed=0))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
