"""WGAN-GP (Gulrajani et al. 2017) on the DCGAN architecture, as in the DCGAN vs WGAN-GP study.

The critic is the DCGAN discriminator without the sigmoid (raw scores) and with LayerNorm (default) or
InstanceNorm instead of BatchNorm, since the gradient penalty is per sample. Each step makes ``n_critic``
critic updates, each on its own real batch, then one generator update; lambda = 10; Adam 1e-4, betas (0.5, 0.9).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from cxraug.data.imageset import ImageSet
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Losses
from cxraug.generators.dcgan import DCGAN, DCGANConfig


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor | None = None) -> torch.Tensor:
    """mean over the batch of (||grad_x critic(x_hat)||_2 - 1)^2, x_hat = eps * real + (1 - eps) * fake."""
    if eps is None:
        eps = torch.rand(real.size(0), 1, 1, 1, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


class WGANGPConfig(DCGANConfig):
    """WGAN-GP defaults: Adam 1e-4, betas (0.5, 0.9), 5 critic steps per generator step, lambda 10, batch 64."""

    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0)
    beta2: float = Field(0.9, ge=0, lt=1)
    n_critic: int = Field(5, ge=1, description="critic updates per generator update")
    gp_lambda: float = Field(10.0, ge=0, description="gradient-penalty weight")
    critic_norm: Literal["layer", "instance"] = Field("layer", description="normalisation inside the critic")
    channels_last: bool = Field(False, description="networks in the channels_last memory format: off for WGAN-GP, "
                                "whose steps (gradient penalty) bench/step_formats.py measured 0.97x on CPU")


@GENERATORS.register("wgan-gp")
class WGANGP(DCGAN):
    """Unconditional WGAN-GP trained on one class."""

    name = "wgan-gp"
    Config = WGANGPConfig
    config: WGANGPConfig

    @property
    def d_norm(self) -> str:  # type: ignore[override]
        return self.config.critic_norm

    def next_batch(self, train: ImageSet) -> Batch:
        """``n_critic`` consecutive batches stacked; :meth:`train_step` gives one to each critic update."""
        draw = super().next_batch
        parts = [draw(train) for _ in range(self.config.n_critic)]
        return Batch(x=torch.cat([p.x for p in parts]), y=torch.cat([p.y for p in parts]))

    def train_step(self, batch: Batch) -> Losses:
        c = self.config
        for real in batch.x.chunk(c.n_critic):
            fake = self.G(self.latent(len(real))).detach()
            r, f = self.augment(real), self.augment(fake)
            wdist = self.D(r).mean() - self.D(f).mean()
            gp = gradient_penalty(self.D, r, f)
            loss_c = -wdist + c.gp_lambda * gp
            self.opt_D.zero_grad(set_to_none=True)
            loss_c.backward()
            self.opt_D.step()
        self.D.requires_grad_(False)
        loss_g = -self.D(self.augment(self.G(self.latent(len(real))))).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        self.D.requires_grad_(True)
        return {"loss_c": loss_c.detach(), "loss_g": loss_g.detach(), "wdist": wdist.detach(), "gp": gp.detach()}
