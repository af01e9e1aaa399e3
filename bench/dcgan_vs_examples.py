"""cxraug's DCGAN training step against the pytorch/examples DCGAN network, side by side (JSON on stdout).

The reference is the network of pytorch/examples' ``dcgan/main.py`` written out here (ngf = ndf = 64, nz = 100,
64 px, one channel; transposed-convolution generator with BatchNorm + ReLU and Tanh, convolutional discriminator
with LeakyReLU 0.2 + BatchNorm and a Sigmoid, BCE loss, Adam 2e-4 with beta1 0.5), one D and one G update per
step on a batch of 64. cxraug's ``dcgan`` gets the same architecture settings and batch. Both train on the same
random images; rounds alternate (reference, cxraug, reference, ...) in one process so that machine load hits both
alike; the ratio is reference seconds per step / cxraug seconds per step (> 1: cxraug is faster). cxraug runs
contiguous (``cxraug``) and with ``channels_last`` networks (``cxraug-channels-last``); ``--compile`` adds the
latter with ``torch.compile``-d networks (compilation happens in the warm-up, outside the timed rounds).

Example (quiet machine): python bench/dcgan_vs_examples.py --threads 2 --rounds 6 --steps 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn

from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch

NZ, NGF, NDF, SIZE, BATCH = 100, 64, 64, 64, 64


def reference_generator() -> nn.Module:
    def up(c_in: int, c_out: int, stride: int, pad: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]

    return nn.Sequential(*up(NZ, NGF * 8, 1, 0), *up(NGF * 8, NGF * 4, 2, 1), *up(NGF * 4, NGF * 2, 2, 1),
                         *up(NGF * 2, NGF, 2, 1), nn.ConvTranspose2d(NGF, 1, 4, 2, 1, bias=False), nn.Tanh())


def reference_discriminator() -> nn.Module:
    def down(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]

    return nn.Sequential(nn.Conv2d(1, NDF, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True), *down(NDF, NDF * 2),
                         *down(NDF * 2, NDF * 4), *down(NDF * 4, NDF * 8), nn.Conv2d(NDF * 8, 1, 4, 1, 0, bias=False),
                         nn.Sigmoid())


class Reference:
    """One training step of the reference DCGAN (real label 1, fake label 0, G trained to make D say 1)."""

    def __init__(self) -> None:
        self.G, self.D = reference_generator(), reference_discriminator()
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.loss = nn.BCELoss()

    def step(self, x: torch.Tensor) -> None:
        ones, zeros = torch.ones(len(x)), torch.zeros(len(x))
        self.D.zero_grad()
        err_real = self.loss(self.D(x).view(-1), ones)
        err_real.backward()
        fake = self.G(torch.randn(len(x), NZ, 1, 1))
        err_fake = self.loss(self.D(fake.detach()).view(-1), zeros)
        err_fake.backward()
        self.opt_D.step()
        self.G.zero_grad()
        self.loss(self.D(fake).view(-1), ones).backward()
        self.opt_G.step()
        float(err_real + err_fake)  # the reference prints its losses every step: one host sync, like cxraug's


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6, help="timed rounds per network (alternating)")
    ap.add_argument("--steps", type=int, default=5, help="training steps per round")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile-d channels_last networks")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(BATCH, 1, SIZE, SIZE) * 2 - 1
    y = torch.zeros(BATCH, dtype=torch.long)
    ref = Reference()

    def cxraug(channels_last: bool, compiled: bool = False):
        gen = GENERATORS.get("dcgan")({"size": SIZE, "batch_size": BATCH, "g_channels": NGF, "d_channels": NDF,
                                       "latent_dim": NZ, "channels_last": channels_last}, classes=["x"])
        if compiled:
            gen.G, gen.D = torch.compile(gen.G), torch.compile(gen.D)
        return lambda: gen.train_step(Batch(x, y))

    runs = {"reference": lambda: ref.step(x), "cxraug": cxraug(False), "cxraug-channels-last": cxraug(True)}
    if args.compile:
        runs["cxraug-channels-last-compiled"] = cxraug(True, compiled=True)
    for fn in runs.values():  # warm-up (and compilation)
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - t0) / args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"threads": args.threads, "rounds": args.rounds, "steps_per_round": args.steps,
                      "batch": BATCH, "size": SIZE, "s_per_step": med, "ratio_reference_over":
                      {k: med["reference"] / v for k, v in med.items() if k != "reference"}, "torch": torch.__version__, "platform": platform.platform()},
                     indent=2))


if __name__ == "__main__":
    main()
