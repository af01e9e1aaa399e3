"""Adaptive discriminator augmentation (Karras et al. 2020, "Training GANs with limited data").

:func:`augment` applies a differentiable pipeline to images in [-1, 1], each operation independently per image
with probability ``p``. The geometric operations are composed into one affine matrix per image and applied with a
single bilinear ``grid_sample`` (reflection padding), so integer translations, flips and 90-degree rotations are
exact and nothing is resampled twice. Colour operations and cutout follow. Outputs keep shape and stay in
[-1, 1] (colour operations clamp).

:class:`AdaptiveP` moves ``p`` from the overfitting heuristic r_t = E[sign(D(real))]: up when r_t exceeds the
target, down otherwise, by (images seen) / (``ada_kimg`` * 1000) per adjustment.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from cxraug.device import sum_over_ranks

Matrices = Callable[[int, float, int, torch.device], torch.Tensor]


def _chosen(b: int, p: float, device: torch.device) -> torch.Tensor:
    """Float mask (B,): 1 where the operation is applied (probability p)."""
    return (torch.rand(b, device=device) < p).float()


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=sx.device).repeat(len(sx), 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=tx.device).repeat(len(tx), 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _rotate(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=cos.device).repeat(len(cos), 1, 1)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def xflip(b: int, p: float, size: int, device: torch.device) -> torch.Tensor:
    """Horizontal flip."""
    flip = _chosen(b, p, device) * torch.randint(0, 2, (b,), device=device)
    return _scale(1 - 2 * flip, torch.ones(b, device=device))


def rotate90(b: int, p: float, size: int, device: torch.device) -> torch.Tensor:
    """Rotation by a random multiple of 90 degrees (exact cosines and sines)."""
    k = (_chosen(b, p, device) * torch.randint(0, 4, (b,), device=device)).long()
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=device)[k]
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=device)[k]
    return _rotate(cos, sin)


def int_translate(b: int, p: float, size: int, device: torch.device) -> torch.Tensor:
    """Translation by a whole number of pixels, up to 1/8 of the image in each axis."""
    on = _chosen(b, p, device)
    t = torch.round((torch.rand(2, b, device=device) * 2 - 1) * 0.125 * size) * on
    return _translate(t[0] * 2 / size, t[1] * 2 / size)


def iso_scale(b: int, p: float, size: int, device: torch.device) -> torch.Tensor:
    """Isotropic scaling by 2^N(0, 0.2^2)."""
    s = torch.exp2(torch.randn(b, device=device) * 0.2 * _chosen(b, p, device))
    return _scale(s, s)


def rotate(b: int, p: float, size: int, device: torch.device) -> torch.Tensor:
    """Arbitrary rotation, uniform in [-pi, pi]. It runs twice in the pipeline (before and after anisotropic
    scaling), each with probability 1 - sqrt(1 - p), so that some rotation happens with probability p."""
    p_rot = 1 - math.sqrt(max(0.0, 1 - p))
    theta = (torch.rand(b, device=device) * 2 - 1) * math.pi * _chosen(b, p_rot, device)
    return _rotate(torch.cos(theta), torch.sin(theta))


def aniso_scale(b: int, p: float, size: int, device: torch.device) -> torch.Tensor:
    """Anisotropic scaling: x by s, y by 1/s, s = 2^N(0, 0.2^2)."""
    s = torch.exp2(torch.randn(b, device=device) * 0.2 * _chosen(b, p, device))
    return _scale(s, 1 / s)


def frac_translate(b: int, p: float, size: int, device: torch.device) -> torch.Tensor:
    """Fractional translation, N(0, 0.125^2) of the image size in each axis."""
    t = torch.randn(2, b, device=device) * 0.125 * 2 * _chosen(b, p, device)
    return _translate(t[0], t[1])


#: geometric operations by name, and the order they are composed in ("rotate" twice, as in the paper)
GEOMETRIC: dict[str, Matrices] = {"xflip": xflip, "rotate90": rotate90, "int_translate": int_translate,
                                  "iso_scale": iso_scale, "rotate": rotate, "aniso_scale": aniso_scale,
                                  "frac_translate": frac_translate}
GEOMETRIC_ORDER = ("xflip", "rotate90", "int_translate", "iso_scale", "rotate", "aniso_scale", "rotate",
                   "frac_translate")


def brightness(x: torch.Tensor, p: float) -> torch.Tensor:
    """Add N(0, 0.2^2) to every pixel of an image."""
    b = torch.randn(len(x), 1, 1, 1, device=x.device) * 0.2 * _chosen(len(x), p, x.device)[:, None, None, None]
    return (x + b).clamp(-1, 1)


def contrast(x: torch.Tensor, p: float) -> torch.Tensor:
    """Scale deviations from the image mean by 2^N(0, 0.5^2)."""
    on = _chosen(len(x), p, x.device)[:, None, None, None]
    c = torch.exp2(torch.randn(len(x), 1, 1, 1, device=x.device) * 0.5 * on)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp(-1, 1)


def cutout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Set a square of half the image side, at a uniformly random centre, to 0 (mid-grey)."""
    b, _, h, w = x.shape
    on = _chosen(b, p, x.device)[:, None, None, None]
    centre = torch.rand(b, 2, 1, 1, device=x.device)
    yy = (torch.arange(h, device=x.device).float() + 0.5) / h
    xx = (torch.arange(w, device=x.device).float() + 0.5) / w
    inside = ((yy[None, :, None] - centre[:, 0]).abs() < 0.25) & ((xx[None, None, :] - centre[:, 1]).abs() < 0.25)
    return x * (1 - on * inside[:, None].float())


PIXEL: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "brightness": brightness, "contrast": contrast, "cutout": cutout}

#: every operation name :func:`augment` understands
OPERATIONS = tuple(GEOMETRIC) + tuple(PIXEL)
#: the study's pipeline (the reference "bgc": blit, geometric, colour); cutout is available but off by default
DEFAULT_OPS = ("xflip", "rotate90", "int_translate", "iso_scale", "rotate", "aniso_scale", "frac_translate",
               "brightness", "contrast")


def augment(x: torch.Tensor, p: float, ops: tuple[str, ...] | list[str] = DEFAULT_OPS) -> torch.Tensor:
    """Augment images ``x`` (B, C, S, S) in [-1, 1]; each operation in ``ops`` hits each image with probability p.

    Differentiable with respect to ``x``; p = 0 returns ``x`` itself.
    """
    if p <= 0:
        return x
    b, device = len(x), x.device
    geo = [name for name in GEOMETRIC_ORDER if name in ops]
    if geo:
        m = torch.eye(3, device=device).repeat(b, 1, 1)
        for name in geo:
            m = m @ GEOMETRIC[name](b, p, x.shape[-1], device)
        grid = F.affine_grid(m[:, :2].to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    for name in PIXEL:
        if name in ops:
            x = PIXEL[name](x, p)
    return x


class AdaptiveP:
    """The augmentation probability p, tuned from the sign of D's logits on real images.

    Every ``interval`` observed batches: r_t = mean(sign(D(real))); p += sign(r_t - target) * n_images /
    (kimg * 1000), clamped to [0, 1]. ``kimg`` is the number of thousand images over which p can move by 1 (the
    paper's 500; short CPU runs need far fewer). :meth:`state_dict` carries p and the pending accumulation.
    """

    def __init__(self, target: float, kimg: float, interval: int, p: float = 0.0) -> None:
        self.target, self.kimg, self.interval = target, kimg, interval
        self.p = p
        self.rt = 0.0
        self._sum: torch.Tensor | float = 0.0  # sum of sign(logits) since the last adjustment (a device tensor)
        self._n = 0
        self._batches = 0

    def observe(self, real_logits: torch.Tensor) -> None:
        """Record one batch of D logits on (augmented) real images; adjust p when ``interval`` batches are in."""
        self._sum = self._sum + torch.sign(real_logits.detach()).sum(dtype=torch.float64)  # on the device: no sync
        self._n += real_logits.numel()
        self._batches += 1
        if self._batches >= self.interval:
            total, n = sum_over_ranks([float(self._sum), self._n])  # DDP: every process adjusts p from all of them
            self.rt = total / n
            step = math.copysign(1.0, self.rt - self.target) if self.rt != self.target else 0.0
            self.p = min(1.0, max(0.0, self.p + step * n / (self.kimg * 1000)))
            self._sum, self._n, self._batches = 0.0, 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "rt": self.rt, "sum": float(self._sum), "n": self._n, "batches": self._batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p, self.rt = float(state["p"]), float(state["rt"])
        self._sum, self._n, self._batches = float(state["sum"]), int(state["n"]), int(state["batches"])
