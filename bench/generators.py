"""Generator throughput on CPU: training images/s and sampling images/s per registered model (JSON on stdout).

Registry-driven: every model in ``cxraug.generators.GENERATORS`` is timed unless ``--models`` names some.
Training: ``--steps`` timed ``train_step`` calls after one warm-up step on random 64 px images, batch 64;
images/s counts the real images each step consumes (WGAN-GP: ``n_critic`` batches per step). Sampling:
``sample(--sample)`` after a warm-up; diffusion models also at each ``--sample-steps`` DDIM step count. A model
that cannot be built (e.g. missing weights) gets an ``error``.

Example: nice python bench/generators.py --models dcgan,wgan-gp --steps 5 --threads 1 > bench-gen.json
         nice python bench/generators.py --models ddpm --size 32 --batch 32 --sample 64 --sample-steps 10,50
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from cxraug.data.imageset import ImageSet
from cxraug.generators import GENERATORS
from cxraug.generators.base import GeneratorKind

CLASSES = ["COVID", "Normal"]


def bench_model(name: str, size: int, batch: int, steps: int, n_sample: int,
                sample_steps: list[int]) -> dict:
    cls = GENERATORS.get(name)
    gen = cls({"size": size, "batch_size": batch}, classes=CLASSES if cls.kind is not GeneratorKind.UNCONDITIONAL
              else CLASSES[:1])
    rng = np.random.default_rng(0)
    n = max(2 * batch, 128)
    labels = np.arange(n) % len(gen.classes) if cls.kind is not GeneratorKind.UNCONDITIONAL else np.zeros(n)
    train = ImageSet(rng.integers(0, 256, (n, size, size), dtype=np.uint8), labels, list(gen.classes))
    train = gen.training_set(train, gen.classes[0])
    for m in gen.modules().values():
        m.train()
    gen.train_step(gen.next_batch(train))  # warm-up
    seen, t0 = 0, time.perf_counter()
    for _ in range(steps):
        b = gen.next_batch(train)
        seen += len(b.x)
        gen.train_step(b)
    train_s = time.perf_counter() - t0
    source = train.images[:n_sample] if cls.kind is GeneratorKind.TRANSLATION else None
    k = n_sample if source is None else len(source)

    def sampling_rate() -> float:
        gen.sample(min(k, 8), source=None if source is None else source[:8])  # warm-up
        t0 = time.perf_counter()
        gen.sample(k, source=source, seed=1)
        return round(k / (time.perf_counter() - t0), 1)

    out = {"kind": cls.kind.value, "train_images_per_s": round(seen / train_s, 2),
           "train_steps_per_s": round(steps / train_s, 3), "images_per_step": seen // steps,
           "sample_images_per_s": sampling_rate(),
           "parameters": sum(p.numel() for m in gen.modules().values() for p in m.parameters())}
    if "sample_steps" in gen.Config.model_fields:  # diffusion: the rate at each number of DDIM steps
        default = out["sample_steps_default"] = gen.config.sample_steps
        for n_steps in sample_steps:  # the default step count was timed above
            gen.config.sample_steps = n_steps
            out[f"sample_images_per_s_{n_steps}_steps"] = \
                out["sample_images_per_s"] if n_steps == default else sampling_rate()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated registry names (default: all)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--sample", type=int, default=256, help="images sampled for the sampling rate")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sample-steps", default="10,50", help="diffusion models: DDIM step counts to time sampling at")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [m for m in args.models.split(",") if m] or GENERATORS.names()
    results = {}
    for name in names:
        torch.manual_seed(0)
        try:
            results[name] = bench_model(name, args.size, args.batch, args.steps, args.sample,
                                        [int(v) for v in args.sample_steps.split(",") if v])
        except Exception as exc:  # noqa: BLE001 - report per model, keep benchmarking the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps({"benchmark": "generators", "device": "cpu", "threads": args.threads, "size": args.size,
                      "batch": args.batch, "steps": args.steps, "torch": torch.__version__,
                      "cpu": platform.processor() or platform.machine(), "models": results}, indent=2))


if __name__ == "__main__":
    main()
