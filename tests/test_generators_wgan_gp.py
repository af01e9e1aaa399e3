"""WGAN-GP: gradient penalty against hand-computed values, critic architecture, critic steps per step."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cxraug.data.imageset import ImageSet
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch
from cxraug.generators.wgan_gp import gradient_penalty


class _Linear(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) * self.w).sum(1)


class _Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(2).flatten(1).sum(1)


def test_gradient_penalty_linear_critic() -> None:
    # f(x) = w . x has gradient w everywhere: penalty = (||w|| - 1)^2 = (5 - 1)^2 = 16 for w = (3, 4, 0, 0)
    critic = _Linear(torch.tensor([3.0, 4.0, 0.0, 0.0]))
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == 16.0


def test_gradient_penalty_quadratic_critic_by_hand() -> None:
    # f(x) = sum x^2 -> grad 2 x_hat; with eps given: x_hat = eps * real + (1 - eps) * fake
    real = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).view(2, 1, 1, 2)
    fake = torch.tensor([[0.0, 0.0], [0.0, 0.0]]).view(2, 1, 1, 2)
    eps = torch.tensor([0.5, 0.25]).view(2, 1, 1, 1)
    # x_hat = (0.5, 0) and (0, 0.5); ||2 x_hat|| = 1 and 1 -> penalty 0; now shift fake by (1, 1)
    assert gradient_penalty(_Square(), real, fake, eps).item() == 0.0
    fake = torch.ones(2, 1, 1, 2)
    # x_hat = (1, 0.5) -> ||(2, 1)|| = sqrt 5 ; x_hat = (0.75, 1.25) -> ||(1.5, 2.5)|| = sqrt 8.5
    expected = ((5 ** 0.5 - 1) ** 2 + (8.5 ** 0.5 - 1) ** 2) / 2
    assert abs(gradient_penalty(_Square(), real, fake, eps).item() - expected) < 1e-6
    # the penalty is differentiable in the critic's parameters (it is part of the critic loss)
    critic = _Linear(torch.tensor([1.0, 1.0]))
    gradient_penalty(critic, real, fake).backward()
    assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0


def test_critic_has_no_batchnorm_and_no_sigmoid() -> None:
    for norm, layer in (("layer", nn.GroupNorm), ("instance", nn.InstanceNorm2d)):
        gen = GENERATORS.get("wgan-gp")({"size": 32, "d_channels": 8, "g_channels": 8, "critic_norm": norm})
        mods = list(gen.D.modules())
        assert not any(isinstance(m, nn.BatchNorm2d) for m in mods)
        assert not any(isinstance(m, nn.Sigmoid) for m in mods)
        assert any(isinstance(m, layer) for m in mods)
        assert any(isinstance(m, nn.BatchNorm2d) for m in gen.G.modules())  # generator as DCGAN
    c = GENERATORS.get("wgan-gp").Config()
    assert (c.lr, c.beta1, c.beta2, c.n_critic, c.gp_lambda) == (1e-4, 0.5, 0.9, 5, 10.0)


def test_five_critic_updates_per_generator_update(monkeypatch) -> None:
    gen = GENERATORS.get("wgan-gp")({"size": 16, "batch_size": 4, "d_channels": 4, "g_channels": 4})
    train = ImageSet(np.random.default_rng(0).integers(0, 255, (12, 16, 16), dtype=np.uint8), np.zeros(12), ["a"])
    batch = gen.next_batch(train)
    assert batch.x.shape == (20, 1, 16, 16)
    counts = {"D": 0, "G": 0}
    for k in counts:
        opt = getattr(gen, f"opt_{k}")
        monkeypatch.setattr(opt, "step", lambda *a, _o=opt.step, _k=k, **kw: counts.__setitem__(_k, counts[_k] + 1)
                            or _o(*a, **kw))
    losses = gen.train_step(Batch(x=batch.x, y=batch.y))
    assert counts == {"D": 5, "G": 1}
    assert set(losses) == {"loss_c", "loss_g", "wdist", "gp"}
