"""StyleGAN2 losses and regularisers: non-saturating logistic loss, R1, path length, lazy regularisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss: softplus(D(G(z))) + softplus(-D(x))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Squared gradient norm of D at real images, per image: ||grad_x D(x)||^2 (``real`` must require grad).

    The graph is kept, so the penalty can be backpropagated into D's weights.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.square().flatten(1).sum(dim=1)


def path_lengths(images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """Per-sample path length ||J_w^T y||, y ~ N(0, I) / sqrt(pixels), of the synthesis map ws -> images."""
    noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


def lazy_adam(params, lr: float, interval: int | None) -> torch.optim.Adam:  # noqa: ANN001 - parameter iterable
    """Adam (beta1 = 0, beta2 = 0.99) with lr and betas rescaled for a regulariser applied every ``interval``
    steps (c = interval / (interval + 1)), so the regularised optimisation matches the unregularised one."""
    c = interval / (interval + 1) if interval else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(0.0, 0.99 ** c), eps=1e-8)
