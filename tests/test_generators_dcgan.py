"""DCGAN architecture as the issue specifies it, and DiffAugment."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from cxraug.augment.diffaugment import diff_augment, parse_policy
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.dcgan import ConvDiscriminator


def test_defaults_follow_the_study() -> None:
    c = GENERATORS.get("dcgan").Config()
    assert (c.latent_dim, c.lr, c.beta1, c.batch_size) == (100, 2e-4, 0.5, 128)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_sizes_and_layers(size: int) -> None:
    gen = GENERATORS.get("dcgan")({"size": size, "g_channels": 8, "d_channels": 8})
    out = gen.G(torch.randn(3, 100))
    assert out.shape == (3, 1, size, size) and out.min() >= -1 and out.max() <= 1
    assert isinstance(gen.G.net[-1], nn.Tanh)
    assert all(isinstance(m, nn.ReLU) for m in gen.G.net if isinstance(m, (nn.ReLU, nn.LeakyReLU)))
    convs = [m for m in gen.D.modules() if isinstance(m, nn.Conv2d)]
    feats = list(gen.D.features)
    assert isinstance(feats[0], nn.Conv2d) and isinstance(feats[1], nn.LeakyReLU)  # no BN after the first conv
    assert feats[1].negative_slope == 0.2
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in gen.D.modules())
    assert n_bn == len(convs) - 2  # BN between, none on the first and last convolutions
    assert gen.D(torch.randn(2, 1, size, size)).shape == (2,)
    w = torch.cat([m.weight.flatten() for m in convs])
    assert abs(w.mean().item()) < 2e-3 and abs(w.std().item() - 0.02) < 2e-3  # N(0, 0.02)


def test_invalid_size_and_options_rejected() -> None:
    with pytest.raises(ValidationError):
        GENERATORS.get("dcgan").Config(size=100)
    with pytest.raises(ValidationError):
        GENERATORS.get("dcgan").Config(diffaugment=["rotate"])
    with pytest.raises(ValidationError):
        GENERATORS.get("dcgan").Config(unknown_option=1)
    with pytest.raises(CxraugError, match="known"):
        parse_policy("translation,warp")


def test_critic_norms_have_no_batchnorm() -> None:
    for norm in ("instance", "layer"):
        d = ConvDiscriminator(32, 8, norm)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())


@pytest.mark.parametrize("op", ["translation", "cutout", "brightness", "contrast", "color"])
def test_diffaugment_changes_images_and_is_differentiable(op: str) -> None:
    torch.manual_seed(0)
    x = (torch.rand(8, 1, 32, 32) * 2 - 1).requires_grad_(True)
    y = diff_augment(x, [op])
    assert y.shape == x.shape
    assert not torch.allclose(y, x)
    (g,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), x)
    assert g.abs().sum() > 0
    if op in ("translation", "cutout"):
        assert (y == -1).any()  # uncovered/cut pixels are background


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.full_like(img, -1.0)
    h, w = img.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[max(-dy, 0):h - max(dy, 0),
                                                                    max(-dx, 0):w - max(dx, 0)]
    return out


def test_diffaugment_translation_is_an_integer_shift_up_to_an_eighth() -> None:
    x = torch.rand(1, 1, 16, 16).repeat(64, 1, 1, 1)
    y = diff_augment(x, "translation", rng=torch.Generator().manual_seed(1))
    shifts = set()
    for img in y[:, 0]:
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(img, _shift(x[0, 0], dy, dx))]
        assert found, "output is not a shift of the input by at most 2 px (1/8 of 16)"
        shifts.add(found[0])
    assert len(shifts) > 10


def test_diffaugment_in_training_uses_fake_and_real(monkeypatch) -> None:
    gen = GENERATORS.get("dcgan")({"size": 16, "batch_size": 4, "g_channels": 4, "d_channels": 4,
                                   "diffaugment": ["translation"]})
    seen = []
    orig = gen.augment
    monkeypatch.setattr(gen, "augment", lambda x: seen.append(x.requires_grad) or orig(x))
    from cxraug.generators.base import Batch

    gen.train_step(Batch(x=torch.rand(4, 1, 16, 16) * 2 - 1, y=torch.zeros(4, dtype=torch.long)))
    assert seen == [False, False, True]  # real, detached fake (D step), fake with gradient (G step)
