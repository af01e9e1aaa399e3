"""Convolutional VAE for sizes where the report's fully connected VAE gets large (64 px and up).

Encoder: the DCGAN discriminator's convolutional trunk (stride-2 4x4 convolutions, BatchNorm, LeakyReLU 0.2)
-> flatten -> mu / log sigma^2 heads; decoder: the DCGAN generator emitting pixel logits. Loss and two-stage
training as in :mod:`cxraug.generators.vae`.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from cxraug.generators import GENERATORS
from cxraug.generators.dcgan import ConvDecoder, ConvDiscriminator, Pow2Size
from cxraug.generators.vae import GaussianEncoder, VAEBase, VAETrainingConfig


class ConvVAEConfig(VAETrainingConfig):
    """Convolutional VAE: 64 px, latent 128, 32 base channels."""

    size: Pow2Size = Field(64, ge=16, le=512, description="image size S, a power of two")
    latent_dim: int = Field(128, ge=1)
    channels: int = Field(32, ge=1, description="width of the first encoder / last decoder convolution")


@GENERATORS.register("conv-vae")
class ConvVAE(VAEBase):
    """VAE with DCGAN-style convolutional encoder and decoder."""

    name = "conv-vae"
    Config = ConvVAEConfig
    config: ConvVAEConfig

    def networks(self) -> tuple[nn.Module, nn.Module]:
        c = self.config
        trunk = ConvDiscriminator(c.size, c.channels, "batch")
        encoder = GaussianEncoder(nn.Sequential(trunk.features, nn.Flatten()), trunk.feature_channels * 16,
                                  c.latent_dim)
        return encoder, ConvDecoder(c.size, c.latent_dim, c.channels, logits=True)
