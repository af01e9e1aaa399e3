"""Class-conditional StyleGAN2-ADA (registry name ``stylegan2-ada``), written from the papers.

One model for all classes (:attr:`GeneratorKind.CONDITIONAL`). Networks in :mod:`.stylegan2.networks`; every image
the discriminator sees (real, fake, and the reals of the R1 penalty) first goes through the adaptive augmentation
pipeline of :mod:`.stylegan2.ada`, whose probability p is resumable state (:meth:`StyleGAN2ADA.extra_state`).

Presets: the ``preset`` field (``cpu``, the default, or ``paper``) supplies defaults for every field it names;
fields given explicitly win. ``paper`` follows the Warsaw study (Fedoruk et al. 2024): 128 px, batch 32,
lr 0.0025 for G and D, r_t = 0.6, gamma = 1.024, 2-layer mapping network, reference-sized channels, EMA half-life
10 kimg, ADA speed 500 kimg. Note: the study states gamma = 1.024, whereas the reference's automatic rule
(0.0002 * S^2 / batch) gives 0.1024 at 128 px and batch 32; we default to the study's value.
``cpu`` is 64 px with a small channel base and a fast ADA speed, and learns visibly in minutes on 2 cores.
From the CLI: ``cxraug train-generator --model stylegan2-ada --set preset=paper --size 128 ...`` (the CLI always
passes ``--size``, default 64, so give it with the paper preset); in a protocol: ``config: {preset: paper, ...}``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Generator, GeneratorConfig, GeneratorKind, Losses
from cxraug.generators.stylegan2.ada import DEFAULT_OPS, OPERATIONS, AdaptiveP, augment
from cxraug.generators.stylegan2.losses import d_loss, g_loss, lazy_adam, path_lengths, r1_penalty
from cxraug.generators.stylegan2.networks import Discriminator, StyleGenerator

#: defaults each preset supplies (explicitly given fields override them)
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"size": 128, "batch_size": 32, "lr": 0.0025, "latent_dim": 512, "channel_base": 16384,
              "channel_max": 512, "ema_decay": 0.5 ** (32 / 10_000), "pl_weight": 2.0, "ada_kimg": 500.0,
              "steps": 31_250, "sample_every": 1000, "checkpoint_every": 1000},
    "cpu": {"size": 64, "batch_size": 16, "lr": 0.0025, "latent_dim": 64, "channel_base": 1024,
            "channel_max": 64, "ema_decay": 0.995, "pl_weight": 0.0, "ada_kimg": 20.0,
            "steps": 3000, "sample_every": 250, "checkpoint_every": 250},
}


class StyleGAN2ADAConfig(GeneratorConfig):
    """StyleGAN2-ADA options; ``preset`` fills in the defaults of the fields it names (see :data:`PRESETS`)."""

    preset: Literal["cpu", "paper"] = Field("cpu", description="cpu: 64 px small model; paper: the study's setup")
    latent_dim: int = Field(64, ge=1, description="size of z and w")
    mapping_layers: int = Field(2, ge=1, description="depth of the mapping network")
    channel_base: int = Field(1024, ge=1, description="feature maps at resolution r: channel_base / r ...")
    channel_max: int = Field(64, ge=1, description="... capped at channel_max")
    style_mixing: float = Field(0.9, ge=0, le=1, description="probability of mixing two latents per batch")
    r1_gamma: float = Field(1.024, ge=0, description="R1 weight gamma (study: 1.024; reference auto: 0.1024)")
    r1_interval: int = Field(16, ge=1, description="lazy R1: applied every k steps")
    pl_weight: float = Field(0.0, ge=0, description="path-length regularisation weight; 0 = off")
    pl_interval: int = Field(4, ge=1, description="lazy path-length regularisation: every k steps")
    mbstd_group: int = Field(4, ge=1, description="minibatch standard deviation group size")
    ada_target: float | None = Field(0.6, gt=0, lt=1, description="ADA target r_t; None = no augmentation")
    ada_kimg: float = Field(20.0, gt=0, description="ADA speed: thousands of images for p to move by 1")
    ada_interval: int = Field(4, ge=1, description="adjust p every k steps")
    ada_ops: list[str] = Field(default_factory=lambda: list(DEFAULT_OPS), description="augmentations (ADA)")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "cpu")
        return {**PRESETS.get(preset, {}), **data}

    @field_validator("size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"StyleGAN2 needs a power-of-two image size, got {v}")
        return v

    @field_validator("ada_ops")
    @classmethod
    def _known_ops(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"unknown ADA operations {unknown}; known: {', '.join(OPERATIONS)}")
        return v


@GENERATORS.register("stylegan2-ada")
class StyleGAN2ADA(Generator):
    """Class-conditional StyleGAN2 with adaptive discriminator augmentation."""

    name = "stylegan2-ada"
    kind = GeneratorKind.CONDITIONAL
    Config = StyleGAN2ADAConfig
    checkpointed = ("G", "D", "opt_g", "opt_d")  # ADA's p and the path-length mean: extra_state
    ema_targets = ("G",)
    config: StyleGAN2ADAConfig

    def build(self) -> None:
        c = self.config
        n = len(self.classes)
        self.G = StyleGenerator(c.size, n, c.latent_dim, c.latent_dim, c.mapping_layers, c.channel_base,
                                c.channel_max).to(self.device)
        self.D = Discriminator(c.size, n, c.channel_base, c.channel_max, c.mbstd_group).to(self.device)
        self.opt_g = lazy_adam(self.G.parameters(), c.lr, c.pl_interval if c.pl_weight > 0 else None)
        self.opt_d = lazy_adam(self.D.parameters(), c.lr, c.r1_interval if c.r1_gamma > 0 else None)
        self.ada = AdaptiveP(c.ada_target or 0.0, c.ada_kimg, c.ada_interval)
        self.pl_mean = 0.0

    def extra_state(self) -> dict[str, Any]:
        return {"ada": self.ada.state_dict(), "pl_mean": self.pl_mean}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "ada" in state:
            self.ada.load_state_dict(state["ada"])
        self.pl_mean = float(state.get("pl_mean", 0.0))

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.ada.p, tuple(self.config.ada_ops))

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, device=self.device)

    def train_step(self, batch: Batch) -> Losses:
        c = self.config
        real, y = batch.x, batch.y
        b = len(real)
        out: Losses = {"ada_p": self.ada.p}

        # discriminator: logistic loss on augmented reals and fakes, lazy R1 through the augmentation
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake = self.G(self._z(b), y, mixing=c.style_mixing)
        do_r1 = c.r1_gamma > 0 and self.step % c.r1_interval == 0
        real_in = real.detach().requires_grad_(do_r1)
        real_logits = self.D(self._augment(real_in), y)
        fake_logits = self.D(self._augment(fake), y)
        loss_d = d_loss(real_logits, fake_logits)
        total_d = loss_d
        if do_r1:
            r1 = r1_penalty(real_logits, real_in).mean()
            total_d = total_d + r1 * (c.r1_gamma / 2) * c.r1_interval
            out["r1"] = r1.detach()
        self.opt_d.zero_grad(set_to_none=True)
        total_d.backward()
        self.opt_d.step()
        if c.ada_target is not None:
            self.ada.observe(real_logits)
            out["ada_rt"] = self.ada.rt

        # generator: non-saturating loss, optional lazy path-length regularisation
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        loss_g = g_loss(self.D(self._augment(self.G(self._z(b), y, mixing=c.style_mixing)), y))
        total_g = loss_g
        if c.pl_weight > 0 and self.step % c.pl_interval == 0:
            pb = max(1, b // 2)
            ws = self.G.styles(self._z(pb), y[:pb], mixing=c.style_mixing)
            lengths = path_lengths(self.G.synthesis(ws), ws)
            self.pl_mean += 0.01 * (float(lengths.detach().mean()) - self.pl_mean)
            pl = (lengths - self.pl_mean).square().mean()
            total_g = total_g + pl * c.pl_weight * c.pl_interval
            out["pl"] = pl.detach()
        self.opt_g.zero_grad(set_to_none=True)
        total_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)

        out.update(loss_g=loss_g.detach(), loss_d=loss_d.detach(), d_real=real_logits.detach().mean(),
                   d_fake=fake_logits.detach().mean())
        return out

    def _generate(self, n: int, labels: torch.Tensor | None, source: torch.Tensor | None,
                  rng: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, device=self.device, generator=rng)
        return self.net("G")(z, labels, rng=rng).clamp(-1.0, 1.0)

