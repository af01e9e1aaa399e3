"""DCGAN (Radford et al. 2016, as the DCGAN vs WGAN-GP study and the PyTorch DCGAN design build it).

Also home of the network builders that WGAN-GP, VAE-GAN and the convolutional VAE share:

* :class:`ConvDecoder` - latent (B, Z) -> image (B, 1, S, S): a 4x4 transposed convolution from the latent,
  then stride-2 transposed convolutions with BatchNorm + ReLU halving the channels, a last transposed
  convolution to one channel and ``tanh``. S is a power of two >= 16 (32, 64, 128, ...).
* :class:`ConvDiscriminator` - image -> one logit per image: stride-2 4x4 convolutions with LeakyReLU 0.2, no
  normalisation on the first and last convolutions, ``norm`` (BatchNorm for DCGAN, InstanceNorm/LayerNorm for the
  WGAN-GP critic) on those between; its last hidden block is exposed as features (VAE-GAN reconstruction).
* :func:`dcgan_init` - weights N(0, 0.02), norm scales N(1, 0.02).

The DCGAN discriminator's sigmoid is folded into the loss (``binary_cross_entropy_with_logits`` = sigmoid + BCE,
numerically stable). Optional DiffAugment (``diffaugment``) is applied to every image D sees, real and fake, in
both the discriminator and the generator update.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, Field
from torch import nn

from cxraug.augment.diffaugment import DiffAugmentOp, diff_augment
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Generator, GeneratorConfig, GeneratorKind, Losses

Norm = Literal["batch", "instance", "layer", "none"]


def check_pow2(size: int) -> int:
    """Validate an image size for the convolutional builders (power of two, >= 16)."""
    if size < 16 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 16 (32, 64, 128, ...), got {size}")
    return size


class ConvDecoder(nn.Module):
    """DCGAN generator: latent (B, Z) or (B, Z, 1, 1) -> (B, 1, S, S); ``tanh`` output unless ``logits``."""

    def __init__(self, size: int, latent_dim: int = 100, channels: int = 64, logits: bool = False) -> None:
        super().__init__()
        n_up = int(math.log2(check_pow2(size))) - 2
        ch = channels * 2 ** (n_up - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch),
                                   nn.ReLU(True)]
        for _ in range(n_up - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers.append(nn.ConvTranspose2d(ch, 1, 4, 2, 1, bias=False))
        if not logits:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.size(0), self.latent_dim, 1, 1))


def _norm_layer(norm: Norm, ch: int) -> list[nn.Module]:
    if norm == "batch":
        return [nn.BatchNorm2d(ch)]
    if norm == "instance":
        return [nn.InstanceNorm2d(ch, affine=True)]
    if norm == "layer":
        return [nn.GroupNorm(1, ch)]  # one group = LayerNorm over (C, H, W)
    return []


class ConvDiscriminator(nn.Module):
    """DCGAN discriminator / WGAN-GP critic: (B, 1, S, S) -> logits (B,); ``features`` = last hidden block."""

    def __init__(self, size: int, channels: int = 64, norm: Norm = "batch") -> None:
        super().__init__()
        ch = channels
        layers: list[nn.Module] = [nn.Conv2d(1, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        side = check_pow2(size) // 2
        while side > 4:
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=norm == "none"), *_norm_layer(norm, ch * 2),
                       nn.LeakyReLU(0.2, True)]
            ch *= 2
            side //= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, 1, 4, 1, 0, bias=False)
        self.feature_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten()


def dcgan_init(m: nn.Module) -> None:
    """DCGAN initialisation: convolutions N(0, 0.02); normalisation scales N(1, 0.02), shifts 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


#: an image size the convolutional builders accept (config field type)
Pow2Size = Annotated[int, AfterValidator(check_pow2)]


class DCGANConfig(GeneratorConfig):
    """DCGAN defaults from the DCGAN vs WGAN-GP study: latent 100, Adam 2e-4, beta1 0.5, batch 128."""

    size: Pow2Size = Field(64, ge=16, le=512, description="image size S, a power of two (32, 64, 128, ...)")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    latent_dim: int = Field(100, ge=1)
    g_channels: int = Field(64, ge=1, description="generator width (ngf)")
    d_channels: int = Field(64, ge=1, description="discriminator width (ndf)")
    diffaugment: list[DiffAugmentOp] = Field(default_factory=list,
                                             description="DiffAugment operations on every image D sees")
    channels_last: bool = Field(True, description="networks in the channels_last memory format: on for the DCGAN "
                                "(and VAE-GAN), whose steps bench/step_formats.py measured 1.06-1.15x faster on CPU")


@GENERATORS.register("dcgan")
class DCGAN(Generator):
    """Unconditional DCGAN trained on one class: non-saturating BCE losses, one D and one G update per step."""

    name = "dcgan"
    kind = GeneratorKind.UNCONDITIONAL
    Config = DCGANConfig
    checkpointed = ("G", "D", "opt_G", "opt_D")
    ema_targets = ("G",)
    config: DCGANConfig
    #: normalisation between the discriminator's hidden convolutions
    d_norm: Norm = "batch"

    def build(self) -> None:
        c = self.config
        self.G = ConvDecoder(c.size, c.latent_dim, c.g_channels).to(self.device)
        self.D = ConvDiscriminator(c.size, c.d_channels, self.d_norm).to(self.device)
        self.G.apply(dcgan_init)
        self.D.apply(dcgan_init)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """DiffAugment of the configured operations (identity when none)."""
        return diff_augment(x, self.config.diffaugment) if self.config.diffaugment else x

    def latent(self, n: int, rng: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, generator=rng, device=self.device)

    def train_step(self, batch: Batch) -> Losses:
        x = batch.x
        ones = torch.ones(len(x), device=self.device)
        fake = self.G(self.latent(len(x)))
        d_real = self.D(self.augment(x))
        d_fake = self.D(self.augment(fake.detach()))
        loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(ones))
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_D.step()
        self.D.requires_grad_(False)
        loss_g = F.binary_cross_entropy_with_logits(self.D(self.augment(fake)), ones)
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        self.D.requires_grad_(True)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "d_real": torch.sigmoid(d_real).mean().detach(), "d_fake": torch.sigmoid(d_fake).mean().detach()}

    def _generate(self, n: int, labels: torch.Tensor | None, source: torch.Tensor | None,
                  rng: torch.Generator) -> torch.Tensor:
        return self.net("G")(self.latent(n, rng))
