"""VAE as the COVID-GAN report builds it (the PyTorch VAE example on 100 x 100 one-channel images).

Encoder: flatten (S*S = 10000) -> fc 400 -> ReLU -> two heads 400 -> 20 (mu, log sigma^2); decoder:
20 -> 400 -> ReLU -> S*S -> sigmoid. Loss: binary cross-entropy of the decoded image against the input scaled to
[0, 1] (summed over pixels) + KL divergence to N(0, I), both averaged over the batch.

Two-stage training as in the report: with ``pretrain_steps`` > 0 the model is fitted on *every* class of the
training fold first, then fine-tuned on ``target_class`` for the remaining steps (:meth:`training_set` hands
``fit`` the whole fold; :meth:`next_batch` switches to the target class at step ``pretrain_steps``).

:class:`VAEBase` holds what the fully connected VAE, the convolutional VAE and the VAE-GAN share
(:class:`GaussianEncoder`, reparameterisation, KL).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from cxraug.data.imageset import ImageSet
from cxraug.data.names import match_class
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Generator, GeneratorConfig, GeneratorKind, Losses


class GaussianEncoder(nn.Module):
    """``trunk`` (images -> (B, features)) followed by linear heads to mu and log sigma^2."""

    def __init__(self, trunk: nn.Module, features: int, latent_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.mu = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.mu(h), self.logvar(h)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over latent dimensions, averaged over the batch."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / mu.size(0)


class VAETrainingConfig(GeneratorConfig):
    """Options every VAE variant has: Adam 1e-3, batch 128, optional pre-training on all classes."""

    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    latent_dim: int = Field(20, ge=1)
    pretrain_steps: int = Field(0, ge=0, description="first steps on every class, then fine-tune on target_class")
    target_class: str | None = Field(None, description="class fine-tuned on after pre-training")

    @model_validator(mode="after")
    def _target(self) -> "VAETrainingConfig":
        if self.pretrain_steps and not self.target_class:
            raise ValueError("pretrain_steps > 0 needs target_class (the class to fine-tune on)")
        return self


class VAEConfig(VAETrainingConfig):
    """COVID-GAN report VAE: 100 px, 400 hidden units, 20 latent dimensions."""

    size: int = Field(100, ge=16, le=512, description="image size S (S x S, one channel)")
    hidden: int = Field(400, ge=1)


class VAEBase(Generator):
    """VAE training shared by the fully connected and convolutional variants (subclasses build the networks).

    ``encoder`` maps images to (mu, log sigma^2); ``decoder`` maps latents to pixel logits (B, 1, S, S).
    """

    kind = GeneratorKind.UNCONDITIONAL
    checkpointed = ("encoder", "decoder", "opt")
    ema_targets = ("decoder",)
    config: VAETrainingConfig

    def build(self) -> None:
        self.encoder, self.decoder = self.networks()
        self.encoder.to(self.device)
        self.decoder.to(self.device)
        self.opt = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=self.config.lr)

    @abstractmethod
    def networks(self) -> tuple[nn.Module, nn.Module]:
        """(encoder, decoder) for this variant."""

    def training_set(self, train: ImageSet, label: str | None = None) -> ImageSet:
        return train if self.config.pretrain_steps else super().training_set(train, label)

    def next_batch(self, train: ImageSet) -> Batch:
        c = self.config
        if c.pretrain_steps and self.step >= c.pretrain_steps:
            if self.step == c.pretrain_steps:
                self._perm = None  # fine-tuning starts a fresh epoch order over the target class
            train = train.of_class(train.classes[match_class(c.target_class or "", train.classes)])
        return super().next_batch(train)

    def train_step(self, batch: Batch) -> Losses:
        mu, logvar = self.encoder(batch.x)
        logits = self.decoder(reparameterize(mu, logvar))
        target = (batch.x + 1) / 2
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(target)
        kl = kl_divergence(mu, logvar)
        loss = bce + kl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), "bce": bce.detach(), "kl": kl.detach()}

    def _generate(self, n: int, labels: torch.Tensor | None, source: torch.Tensor | None,
                  rng: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=rng, device=self.device)
        return torch.sigmoid(self.net("decoder")(z)) * 2 - 1


@GENERATORS.register("vae")
class VAE(VAEBase):
    """The report's fully connected VAE."""

    name = "vae"
    Config = VAEConfig
    config: VAEConfig

    def networks(self) -> tuple[nn.Module, nn.Module]:
        c = self.config
        pixels = c.size * c.size
        encoder = GaussianEncoder(nn.Sequential(nn.Flatten(), nn.Linear(pixels, c.hidden), nn.ReLU()),
                                  c.hidden, c.latent_dim)
        decoder = nn.Sequential(nn.Linear(c.latent_dim, c.hidden), nn.ReLU(), nn.Linear(c.hidden, pixels),
                                nn.Unflatten(1, (1, c.size, c.size)))
        return encoder, decoder
