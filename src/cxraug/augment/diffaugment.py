"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to *every* image the discriminator sees.

The same random transformation family is applied to real and generated images, in the discriminator step and
in the generator step, so gradients flow through the augmentation into the generator. Images are float tensors
in [-1, 1], shape (B, C, H, W). Randomness comes from the global torch RNG (so exact resume holds), or from an
explicit ``torch.Generator``.

Operations (names used in configs and on the command line):

* ``translation`` - shift by up to 1/8 of the side; uncovered pixels become black (-1);
* ``cutout``      - one square of half the side set to the background value (-1) at a random position;
* ``brightness``  - add a uniform offset in [-0.5, 0.5);
* ``contrast``    - scale around the per-image mean by a factor in [0.5, 1.5);
* ``color``       - shorthand for ``brightness`` then ``contrast`` (DiffAugment's "color" without saturation:
  the images have one channel).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch

DiffAugmentOp = Literal["translation", "cutout", "brightness", "contrast", "color"]
OPS: tuple[str, ...] = ("translation", "cutout", "brightness", "contrast", "color")


def _rand(shape: Sequence[int], x: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
    return torch.rand(*shape, generator=rng, device=x.device, dtype=x.dtype)


def brightness(x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    """Add one uniform offset in [-0.5, 0.5) per image."""
    return x + (_rand((x.size(0), 1, 1, 1), x, rng) - 0.5)


def contrast(x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    """Scale each image around its mean by a factor in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((x.size(0), 1, 1, 1), x, rng) + 0.5) + mean


def translation(x: torch.Tensor, rng: torch.Generator | None = None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by an integer offset of up to ``ratio`` of its side; uncovered pixels become -1."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = (torch.randint(-sh, sh + 1, (b, 1, 1), generator=rng, device=x.device) if sh else
          torch.zeros(b, 1, 1, dtype=torch.long, device=x.device))
    dx = (torch.randint(-sw, sw + 1, (b, 1, 1), generator=rng, device=x.device) if sw else
          torch.zeros(b, 1, 1, dtype=torch.long, device=x.device))
    gy = torch.arange(h, device=x.device).view(1, h, 1) - dy  # source row of each output row
    gx = torch.arange(w, device=x.device).view(1, 1, w) - dx
    valid = ((gy >= 0) & (gy < h) & (gx >= 0) & (gx < w)).unsqueeze(1)
    flat = (gy.clamp(0, h - 1) * w + gx.clamp(0, w - 1)).view(b, 1, h * w).expand(-1, x.size(1), -1)
    shifted = x.reshape(b, x.size(1), h * w).gather(2, flat).view_as(x)
    return torch.where(valid, shifted, torch.full_like(shifted, -1.0))


def cutout(x: torch.Tensor, rng: torch.Generator | None = None, ratio: float = 0.5) -> torch.Tensor:
    """Set one ``ratio``-sized square per image (centre uniform over the image, clipped) to -1."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=rng, device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=rng, device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw))
    return torch.where(inside.unsqueeze(1), torch.full_like(x, -1.0), x)


def _color(x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    return contrast(brightness(x, rng), rng)


_FUNCS: dict[str, Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]] = {
    "translation": translation, "cutout": cutout, "brightness": brightness, "contrast": contrast, "color": _color,
}


def parse_policy(policy: str | Sequence[str] | None) -> list[str]:
    """``"translation,cutout"`` or a list -> validated list of operation names (empty = off)."""
    if policy is None:
        return []
    names = [p.strip() for p in (policy.split(",") if isinstance(policy, str) else policy) if p.strip()]
    unknown = [p for p in names if p not in _FUNCS]
    if unknown:
        from cxraug.errors import CxraugError

        raise CxraugError(f"unknown DiffAugment operation(s) {unknown}; known: {', '.join(OPS)}")
    return names


def diff_augment(x: torch.Tensor, policy: str | Sequence[str] | None,
                 rng: torch.Generator | None = None) -> torch.Tensor:
    """Apply the operations of ``policy`` in order; differentiable with respect to ``x``."""
    for name in parse_policy(policy):
        x = _FUNCS[name](x, rng)
    return x
