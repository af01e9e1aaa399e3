"""Training-step speed of cxraug models by memory format (and torch.compile), side by side (JSON on stdout).

For each model - the DCGAN of ``bench/dcgan_vs_examples.py`` (64 px, width 64, batch 64) and the study classifier
(ResNet-18 from scratch, 64 px, batch 32, fedoruk augmentation, Adam) - the same training step runs with the default
(contiguous) layout and with ``channels_last`` weights and inputs, optionally also ``torch.compile``-d; rounds
alternate between the variants in one process so that machine load hits them alike. Ratios are contiguous seconds
per step / variant seconds per step (> 1: the variant is faster). A variant is worth turning on only where this
ratio is clearly above 1 at the threads a study uses.

Example (quiet machine): python bench/step_formats.py --threads 2 --rounds 5 --steps 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Callable

import torch

from cxraug.augment import POLICIES
from cxraug.classifiers.config import ClassifierConfig
from cxraug.classifiers.steps import make_optimizer
from cxraug.classifiers.trained import build_from_config
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch

CL = torch.channels_last


def dcgan_step(layout: str, compiled: bool) -> Callable[[], None]:
    gen = GENERATORS.get("dcgan")({"size": 64, "batch_size": 64, "g_channels": 64, "d_channels": 64,
                                   "latent_dim": 100}, classes=["x"])
    x = torch.rand(64, 1, 64, 64) * 2 - 1
    if layout == "channels_last":
        gen.G.to(memory_format=CL)
        gen.D.to(memory_format=CL)
        x = x.contiguous(memory_format=CL)
    if compiled:
        gen.G, gen.D = torch.compile(gen.G), torch.compile(gen.D)
    y = torch.zeros(64, dtype=torch.long)
    return lambda: gen.train_step(Batch(x, y))


def resnet_step(layout: str, compiled: bool) -> Callable[[], None]:
    cfg = ClassifierConfig(model="resnet18", batch_size=32, augment="fedoruk")
    net = build_from_config(cfg, 3, 64, load_weights=False)
    policy = POLICIES.get(cfg.augment)(cfg.augment_magnitude)
    opt = make_optimizer(cfg, list(net.parameters()), 1e-3)
    x_u = torch.rand(32, 1, 64, 64)
    y = torch.arange(32) % 3
    if layout == "channels_last":
        net.to(memory_format=CL)
    model = torch.compile(net) if compiled else net

    def step() -> None:
        net.train()
        x = policy(x_u)
        if layout == "channels_last":
            x = x.contiguous(memory_format=CL)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile-d contiguous models")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: dict[str, object] = {"threads": args.threads, "rounds": args.rounds, "steps_per_round": args.steps,
                              "torch": torch.__version__, "platform": platform.platform()}
    for name, make in (("dcgan", dcgan_step), ("resnet18", resnet_step)):
        torch.manual_seed(0)
        variants = {"contiguous": make("contiguous", False), "channels_last": make("channels_last", False)}
        if args.compile:
            variants["compiled"] = make("contiguous", True)
        for fn in variants.values():  # warm-up (and compilation)
            fn()
            fn()
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for k, fn in variants.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                times[k].append((time.perf_counter() - t0) / args.steps)
        med = {k: statistics.median(v) for k, v in times.items()}
        out[name] = {"s_per_step": med, "ratio_contiguous_over": {k: med["contiguous"] / v for k, v in med.items()}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
