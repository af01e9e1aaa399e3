"""The DDIM chain that both :meth:`DDPM.sample <cxraug.generators.ddpm.DDPM>` and its SDEdit ``edit`` run.

A chain is planned per image: it starts at a 0-based timestep ``top`` (``T - 1`` for free sampling, lower for an
edit) and takes ``k = min(steps, top + 1)`` DDIM steps. Its timesteps follow MONAI's ``DDIMScheduler``
(``linspace(top, 0, k)`` rounded) and each step jumps ``(top + 1) // k`` timesteps, as MONAI's ``step`` does
(``T // steps`` for free sampling), so that a chain from ``T - 1`` is MONAI's DDIM bit for bit
(``tests/test_generators_ddpm.py`` compares them). Images whose chain is shorter than the longest of a batch
sit out its first steps (``active``), so that a batch may mix strengths.

:func:`step` is MONAI's ``DDIMScheduler.step`` (epsilon prediction, clipped x0, ``set_alpha_to_one``) with a
timestep and a previous timestep per image instead of one scalar.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Chain:
    """The planned DDIM steps of a batch: row ``j`` is step ``j`` of every image."""

    t: torch.Tensor  # (steps, n) int64: the timestep an image is at before step j
    prev: torch.Tensor  # (steps, n) int64: the timestep it reaches (negative = the clean image)
    active: torch.Tensor  # (steps, n) bool: whether image i takes step j at all

    @property
    def steps(self) -> int:
        return int(self.t.shape[0])


def plan(top: torch.Tensor, steps: int) -> Chain:
    """The chain of each image from 0-based timestep ``top[i]`` (``-1``: no step, the image is left as it is)
    down to the clean image in at most ``steps`` DDIM steps."""
    tops = [int(v) for v in top.tolist()]
    lengths = [min(steps, t + 1) if t >= 0 else 0 for t in tops]
    width = max(lengths, default=0)
    n = len(tops)
    t = torch.zeros(width, n, dtype=torch.long)
    prev = torch.full((width, n), -1, dtype=torch.long)
    active = torch.zeros(width, n, dtype=torch.bool)
    for i, (start, k) in enumerate(zip(tops, lengths)):
        if k == 0:
            continue
        ts = torch.linspace(start, 0, k).round().long()
        rows = slice(width - k, width)
        t[rows, i] = ts
        prev[rows, i] = ts - (start + 1) // k
        active[rows, i] = True
    return Chain(t=t.to(top.device), prev=prev.to(top.device), active=active.to(top.device))


def _per_image(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(-1, *([1] * (ndim - 1)))


def step(alphas_cumprod: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, prev: torch.Tensor,
         x: torch.Tensor, eta: float, rng: torch.Generator | None) -> torch.Tensor:
    """One DDIM update of every image of ``x`` from timestep ``t[i]`` to ``prev[i]`` given the noise estimate."""
    ac = alphas_cumprod.to(x.device)
    alpha_t = _per_image(ac[t], x.ndim)
    alpha_prev = _per_image(torch.where(prev >= 0, ac[prev.clamp(min=0)], torch.ones((), dtype=ac.dtype,
                                                                                      device=ac.device)), x.ndim)
    beta_t = 1 - alpha_t
    x0 = ((x - (beta_t ** 0.5) * eps) / (alpha_t ** 0.5)).clamp(-1.0, 1.0)
    variance = ((1 - alpha_prev) / beta_t) * (1 - alpha_t / alpha_prev)
    std = eta * variance ** 0.5
    out = alpha_prev ** 0.5 * x0 + (1 - alpha_prev - std ** 2) ** 0.5 * eps
    if eta > 0:
        noise = torch.randn(eps.shape, dtype=eps.dtype, generator=rng, device=eps.device)
        out = out + variance ** 0.5 * eta * noise
    return out
