"""VAE-GAN (Larsen et al. 2016) as the COVID-GAN report builds it.

* Encoder: ResNet-18 with a one-channel 7x7 stem (from scratch by default; ``pretrained`` loads the ImageNet
  weights and sums the stem over RGB), average pooling, two 512-unit fully connected layers with ReLU, then
  linear heads to mu and log sigma^2 of the decoder's latent (100).
* Decoder = generator: the DCGAN generator, shared between the VAE and the GAN.
* Discriminator: the DCGAN discriminator, seeing real, reconstructed and prior-sampled images.

Losses (Larsen's eq. 9 routing; per-image sums averaged over the batch):

* ``kl``  = KL(q(z|x) || N(0, I));
* ``rec`` = 0.5 * ||D_l(x_rec) - D_l(x)||^2 on the discriminator's last hidden block ``D_l`` (feature-wise,
  not pixel-wise; real and reconstructed images share one forward pass, so BatchNorm statistics match);
* ``gan`` = BCE of D on real (1), reconstructed (0) and prior (0) images; the decoder minimises the
  non-saturating ``BCE(D(x_rec), 1) + BCE(D(x_p), 1)``.

Encoder: ``kl_weight * kl + rec``; decoder: ``gamma * rec + gan``; discriminator: ``gan`` only. The encoder gets
no gradient from the GAN loss and the discriminator none from ``rec``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from cxraug.errors import MissingWeightsError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Losses
from cxraug.generators.dcgan import DCGAN, DCGANConfig
from cxraug.generators.vae import GaussianEncoder, kl_divergence, reparameterize


def resnet18_trunk(pretrained: bool = False) -> nn.Module:
    """ResNet-18 with a one-channel stem; ``fc`` replaced by avgpool features -> 512 -> ReLU -> 512 -> ReLU."""
    from torchvision.models import ResNet18_Weights, resnet18

    if pretrained:
        try:
            net = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        except Exception as exc:  # noqa: BLE001 - offline, no cached file, corrupt download
            raise MissingWeightsError(f"vae-gan: ImageNet ResNet-18 weights are not available ({type(exc).__name__}"
                                      f": {exc}); train from scratch (pretrained=false) or place the torchvision "
                                      f"file in the torch hub cache") from None
        stem = net.conv1.weight.detach().sum(1, keepdim=True)
    net = resnet18(weights=None) if not pretrained else net
    net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    if pretrained:
        net.conv1.weight.data.copy_(stem)
    net.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(True), nn.Linear(512, 512), nn.ReLU(True))
    return net


class VAEGANConfig(DCGANConfig):
    """VAE-GAN: DCGAN decoder/discriminator (latent 100, Adam 2e-4, beta1 0.5), ResNet-18 encoder."""

    batch_size: int = Field(64, ge=1)
    pretrained: bool = Field(False, description="ImageNet weights for the ResNet-18 encoder")
    kl_weight: float = Field(1.0, ge=0, description="weight of KL in the encoder loss")
    gamma: float = Field(1e-3, ge=0, description="weight of the feature reconstruction in the decoder loss")


@GENERATORS.register("vae-gan")
class VAEGAN(DCGAN):
    """Unconditional VAE-GAN trained on one class; samples come from the decoder on prior noise."""

    name = "vae-gan"
    Config = VAEGANConfig
    config: VAEGANConfig
    checkpointed = (*DCGAN.checkpointed, "E", "opt_E")

    def build(self) -> None:
        super().build()
        c = self.config
        self.E = GaussianEncoder(resnet18_trunk(c.pretrained), 512, c.latent_dim).to(self.device)
        self.opt_E = torch.optim.Adam(self.E.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    def encoder_decoder_losses(self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                               x_rec: torch.Tensor, x_p: torch.Tensor) -> dict[str, torch.Tensor]:
        """``kl``, feature ``rec`` and the decoder's non-saturating ``gan`` loss (graphs kept for routing)."""
        feats = self.D.features(torch.cat([x, x_rec])).flatten(1)
        f_real, f_rec = feats.chunk(2)
        rec = 0.5 * (f_rec - f_real.detach()).pow(2).sum(1).mean()
        ones = torch.ones(len(x), device=x.device)
        gan = F.binary_cross_entropy_with_logits(self.D(self.augment(x_rec)), ones) + \
            F.binary_cross_entropy_with_logits(self.D(self.augment(x_p)), ones)
        return {"kl": kl_divergence(mu, logvar), "rec": rec, "gan": gan}

    def train_step(self, batch: Batch) -> Losses:
        c = self.config
        x = batch.x
        mu, logvar = self.E(x)
        x_rec = self.G(reparameterize(mu, logvar))
        x_p = self.G(self.latent(len(x)))
        ones = torch.ones(len(x), device=self.device)
        zeros = torch.zeros_like(ones)
        d_real = self.D(self.augment(x))
        loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + \
            F.binary_cross_entropy_with_logits(self.D(self.augment(x_rec.detach())), zeros) + \
            F.binary_cross_entropy_with_logits(self.D(self.augment(x_p.detach())), zeros)
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_D.step()
        self.D.requires_grad_(False)
        parts = self.encoder_decoder_losses(x, mu, logvar, x_rec, x_p)
        loss_e = c.kl_weight * parts["kl"] + parts["rec"]
        loss_g = c.gamma * parts["rec"] + parts["gan"]
        enc, dec = list(self.E.parameters()), list(self.G.parameters())
        grads_e = torch.autograd.grad(loss_e, enc, retain_graph=True)
        grads_g = torch.autograd.grad(loss_g, dec)
        for p, g in zip(enc + dec, grads_e + grads_g):
            p.grad = g
        self.opt_E.step()
        self.opt_G.step()
        self.D.requires_grad_(True)
        return {"loss_d": loss_d.detach(), "loss_e": loss_e.detach(), "loss_g": loss_g.detach(),
                **{k: v.detach() for k, v in parts.items()}, "d_real": torch.sigmoid(d_real).mean().detach()}
