"""Training-step speed of cxraug models by memory format (and torch.compile), side by side (JSON on stdout).

Generators run through their own ``channels_last`` config option (the code path a study uses: networks and
optimiser state change layout in place), each at the settings of a shipped cpu protocol:
``dcgan`` (the network of ``bench/dcgan_vs_examples.py``: 64 px, width 64, batch 64), ``dcgan-cpu`` (width 32,
batch 32, as in ``dcgan-vs-wgangp-cpu``), ``wgan-gp`` and ``vae-gan`` (the same widths, as in
``dcgan-vs-wgangp-cpu`` and ``covid-gan-vaegan-cpu``), ``acgan`` (``covidgan-acgan-cpu``: 32 px), ``ddpm-cpu64`` (the
``cpu64`` preset of ``small-n-recipes-cpu``), ``ddpm-quickstart`` (the quickstart's 32 px UNet) and
``stylegan2-ada`` (``cpu`` preset, 64 px, batch 16).
Classifiers (every registered one, from scratch: ``resnet18`` at 64 px as in the cpu protocols, ``custom-cnn`` at
32 px as in the quickstart, the others at 64 px) run through ``ClassifierConfig.channels_last``: a training step
(batch 32, fedoruk augmentation, Adam) and, as ``NAME-eval``, one validation pass over 256 images. Rounds alternate
between the variants in one process so that machine load hits them alike. Ratios are contiguous seconds per step /
variant seconds per step (> 1: the variant is faster). A model's default turns ``channels_last`` on only where this
ratio is clearly above 1 at the threads a study uses (one per unit in the cpu protocols; for a classifier, its
training step or its validation pass, and the other not below 1).

Example (quiet machine): python bench/step_formats.py --threads 1 --rounds 5 --steps 3
(classifiers only: ``--models resnet18,custom-cnn,...,resnet18-eval,...``)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from functools import partial
from typing import Callable

import torch

from cxraug.augment import POLICIES
from cxraug.classifiers.config import ClassifierConfig
from cxraug.classifiers.steps import make_optimizer
from cxraug.classifiers.trained import build_from_config
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, GeneratorKind

#: (registry name, config) of each timed generator: the settings of a shipped cpu protocol
GENERATOR_CASES: dict[str, tuple[str, dict]] = {
    "dcgan": ("dcgan", {"size": 64, "batch_size": 64, "g_channels": 64, "d_channels": 64, "latent_dim": 100}),
    "dcgan-cpu": ("dcgan", {"size": 64, "batch_size": 32, "g_channels": 32, "d_channels": 32}),
    "wgan-gp": ("wgan-gp", {"size": 64, "batch_size": 32, "g_channels": 32, "d_channels": 32}),
    "vae-gan": ("vae-gan", {"size": 64, "batch_size": 32, "g_channels": 32, "d_channels": 32}),
    "acgan": ("acgan", {"size": 32, "g_width": 128, "d_width": 32, "batch_size": 32}),
    "ddpm-cpu64": ("ddpm", {"preset": "cpu64"}),
    "ddpm-quickstart": ("ddpm", {"size": 32, "channels": [16, 32], "attention_levels": [False, False],
                                 "num_head_channels": 16, "norm_num_groups": 8, "batch_size": 16}),
    "stylegan2-ada": ("stylegan2-ada", {"preset": "cpu", "size": 64, "batch_size": 16}),
}


def generator_step(case: str, layout: str, compiled: bool) -> Callable[[], None]:
    model, cfg = GENERATOR_CASES[case]
    cls = GENERATORS.get(model)
    classes = ["a", "b", "c"] if cls.kind is GeneratorKind.CONDITIONAL else ["x"]
    gen = cls({**cfg, "channels_last": layout == "channels_last"}, classes=classes)
    size, batch = gen.config.size, gen.config.batch_size
    x = torch.rand(batch, 1, size, size) * 2 - 1
    y = torch.arange(batch) % len(classes)
    if compiled:
        for name in gen.checkpointed:
            if isinstance(getattr(gen, name), torch.nn.Module):
                setattr(gen, name, torch.compile(getattr(gen, name)))
    return lambda: gen.train_step(Batch(x, y))


#: (model, head, image size) of each timed classifier: the settings of a shipped protocol (``resnet18``: the cpu
#: protocols' classifier; ``custom-cnn``: the quickstart's at 32 px; the others at 64 px)
CLASSIFIER_CASES: dict[str, tuple[str, str | None, int]] = {
    "resnet18": ("resnet18", None, 64),
    "custom-cnn": ("custom-cnn", None, 32),
    "simple-resnet18": ("simple-resnet18", None, 64),
    "ib-resnet": ("ib-resnet", None, 64),
    "vgg16": ("vgg16", "iit-vgg16", 64),
    "resnet50": ("resnet50", None, 64),
}
#: validation images of one timed evaluation pass (``_validate``'s batch)
EVAL_IMAGES = 256


def classifier_case(case: str, layout: str, compiled: bool) -> Callable[[], None]:
    """One training step (batch 32, fedoruk augmentation, Adam) through the ``channels_last`` config option; with
    ``case`` ending in ``-eval``, one validation pass over EVAL_IMAGES images instead."""
    evaluate = case.endswith("-eval")
    model, head, size = CLASSIFIER_CASES[case.removesuffix("-eval")]
    cfg = ClassifierConfig(model=model, head=head, batch_size=32, augment="fedoruk",
                           channels_last=layout == "channels_last")
    net = build_from_config(cfg, 3, size, load_weights=False)
    model_fn = torch.compile(net) if compiled else net
    if evaluate:
        v = torch.rand(EVAL_IMAGES, 1, size, size) * 2 - 1

        def forward() -> None:
            net.eval()
            with torch.no_grad():
                model_fn(v)

        return forward
    policy = POLICIES.get(cfg.augment)(cfg.augment_magnitude)
    opt = make_optimizer(cfg, list(net.parameters()), 1e-3)
    x_u = torch.rand(32, 1, size, size)
    y = torch.arange(32) % 3

    def step() -> None:
        net.train()
        loss = torch.nn.functional.cross_entropy(model_fn(policy(x_u)), y)
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
    names = [*GENERATOR_CASES, *CLASSIFIER_CASES, *(f"{c}-eval" for c in CLASSIFIER_CASES)]
    ap.add_argument("--models", default=",".join(names), help="comma-separated: " + ", ".join(names))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: dict[str, object] = {"threads": args.threads, "rounds": args.rounds, "steps_per_round": args.steps,
                              "torch": torch.__version__, "platform": platform.platform()}
    cases: dict[str, Callable[[str, bool], Callable[[], None]]] = {
        name: partial(generator_step, name) for name in GENERATOR_CASES}
    cases.update({name: partial(classifier_case, name) for name in names if name not in GENERATOR_CASES})
    for name in args.models.split(","):
        make = cases[name]
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
