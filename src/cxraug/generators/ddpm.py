"""Class-conditional denoising diffusion model (registry name ``ddpm``): MONAI's ``DiffusionModelUNet`` with
class embeddings, trained with MONAI's ``DDPMScheduler`` (noise prediction, MSE), sampled with its
``DDIMScheduler`` in ``sample_steps`` steps, with classifier-free guidance (Ho & Salimans 2021).

* Classifier-free guidance: during training each label is replaced by the extra "no class" embedding (index
  ``len(classes)``) with probability ``label_dropout``; at sampling the noise estimate is
  ``eps_uncond + guidance_scale * (eps_cond - eps_uncond)``. ``guidance_scale`` 1 is plain conditional sampling,
  0 is unconditional sampling (the label is not used at all), > 1 trades diversity for class fidelity.
  Sampling options (``guidance_scale``, ``sample_steps``, ``eta``) are config fields and may be changed on a
  trained model before sampling (``gen.config.guidance_scale = 2.0``).
* EMA weights (``ema_decay``) are what ``sample`` and ``edit`` use.
* Edits of real images (SDEdit, Meng et al. 2022): :meth:`DDPM.edit` noises each image to the timestep of its
  strength s (``round(s * T)`` forward steps) and runs the same guided DDIM chain as sampling from there
  (:mod:`cxraug.generators.ddim`); s = 1 is free sampling, bit for bit.
* Presets: the ``preset`` field supplies defaults for every field it names (fields given explicitly win):
  ``cpu`` - 32 px, a three-level UNet (16/32/64 channels, attention at the lowest level, one residual block per
  level, 0.7 M parameters, 0.2 GFLOP per image forward), batch 32, lr 5e-4, 2000 steps: learns visibly in
  minutes on 2 cores;
  ``cpu64`` - 64 px (the classifier's size, no resize), four levels (16/32/48/64 channels, attention at the
  lowest, 8 x 8, level, one residual block per level): 924,241 parameters with three classes (+16 per further
  class) and 0.639 GFLOP per image forward at 64 px (``torch.utils.flop_counter.FlopCounterMode``, which counts a
  multiply-add as 2 FLOPs; a training step costs about three forwards per image), batch 32, lr 5e-4, EMA 0.995,
  600 steps and 15 DDIM steps by default. Sized for 2 CPU cores: training and edit/sample rates are measured by
  ``bench/ddpm_cpu64.py`` (BENCHMARKS.md: 64.6 training img/s at 2 threads, 0.5 s a step; 20 / 8 img/s
  sampling or editing at 10 / 25 DDIM steps);
  ``paper`` - 128 px, four levels (64/128/256/256, attention at the two lowest), two residual blocks per level,
  batch 16, lr 1e-4, EMA 0.9999, 60000 steps (a GPU budget).

Diffusion models are reported to memorise training images: run the memorisation audit of ``cxraug.metrics`` on
their samples (the study report does so by default).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from cxraug.data.imageset import to_unit
from cxraug.data.resize import resize_uint8
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS, ddim
from cxraug.generators.base import Batch, Generator, GeneratorConfig, GeneratorKind, Losses

#: defaults each preset supplies (explicitly given fields override them)
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"size": 32, "channels": [16, 32, 64], "attention_levels": [False, False, True], "num_res_blocks": 1,
            "num_head_channels": 16, "norm_num_groups": 8, "batch_size": 32, "lr": 5e-4, "ema_decay": 0.995,
            "steps": 2000, "sample_every": 500, "checkpoint_every": 500},
    "cpu64": {"size": 64, "channels": [16, 32, 48, 64], "attention_levels": [False, False, False, True],
              "num_res_blocks": 1, "num_head_channels": 16, "norm_num_groups": 8, "batch_size": 32, "lr": 5e-4,
              "ema_decay": 0.995, "steps": 600, "sample_steps": 15, "sample_every": 200, "checkpoint_every": 200},
    "paper": {"size": 128, "channels": [64, 128, 256, 256], "attention_levels": [False, False, True, True],
              "num_res_blocks": 2, "num_head_channels": 32, "norm_num_groups": 32, "batch_size": 16, "lr": 1e-4,
              "ema_decay": 0.9999, "steps": 60_000, "sample_every": 2000, "checkpoint_every": 2000},
}


class DDPMConfig(GeneratorConfig):
    """Diffusion options; ``preset`` fills in the defaults of the fields it names (see :data:`PRESETS`)."""

    preset: Literal["cpu", "cpu64", "paper"] = Field("cpu", description="cpu: 32 px small UNet; cpu64: 64 px UNet "
                                                     "for 2 CPU cores; paper: 128 px")
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1,
                                description="UNet channels per level")
    attention_levels: list[bool] = Field(default_factory=lambda: [False, False, True],
                                         description="self-attention per level")
    num_res_blocks: int = Field(1, ge=1, description="residual blocks per level")
    num_head_channels: int = Field(16, ge=1, description="channels per attention head")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups (must divide every level's channels)")
    train_timesteps: int = Field(1000, ge=10, description="diffusion steps T of the training (DDPM) schedule")
    schedule: Literal["linear_beta", "scaled_linear_beta", "cosine"] = Field(
        "scaled_linear_beta", description="noise schedule (MONAI); scaled_linear_beta uses betas 0.0015..0.0195")
    label_dropout: float = Field(0.1, ge=0, le=1, description="probability a training label becomes 'no class'")
    guidance_scale: float = Field(1.0, ge=0, description="sampling: 0 unconditional, 1 conditional, >1 guided")
    sample_steps: int = Field(50, ge=1, description="sampling: DDIM steps")
    eta: float = Field(0.0, ge=0, le=1, description="sampling: DDIM eta (0 = deterministic given the noise)")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {**PRESETS[data.get("preset", "cpu")], **data}

    @model_validator(mode="after")
    def _consistent(self) -> "DDPMConfig":
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"attention_levels needs one entry per level ({len(self.channels)}), "
                             f"got {len(self.attention_levels)}")
        bad = [c for c in self.channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups {self.norm_num_groups} must divide every level's channels "
                             f"(not {bad})")
        if self.size % 2 ** (len(self.channels) - 1):
            raise ValueError(f"size {self.size} must be divisible by 2^(levels - 1) = "
                             f"{2 ** (len(self.channels) - 1)}")
        if self.sample_steps > self.train_timesteps:
            raise ValueError(f"sample_steps ({self.sample_steps}) cannot exceed train_timesteps "
                             f"({self.train_timesteps})")
        return self

    def network_passes(self, steps: int | None = None, guidance: float | None = None, strength: float = 1.0) -> int:
        """UNet passes per image of one chain (``steps`` and ``guidance`` default to the sampling fields): an edit
        of ``strength`` s runs ``min(steps, round(s x T))`` DDIM steps whatever s, one pass each, and a guided
        step (guidance other than 0 or 1) passes a doubled batch (what the cost model counts)."""
        k = min(self.sample_steps if steps is None else steps, max(round(strength * self.train_timesteps), 0))
        return k * (1 if (self.guidance_scale if guidance is None else guidance) in (0, 1) else 2)


def _schedule_args(c: DDPMConfig) -> dict[str, Any]:
    args: dict[str, Any] = {"num_train_timesteps": c.train_timesteps, "schedule": c.schedule}
    if c.schedule == "scaled_linear_beta":
        args.update(beta_start=0.0015, beta_end=0.0195)
    return args


@GENERATORS.register("ddpm")
class DDPM(Generator):
    """Class-conditional DDPM with DDIM sampling and classifier-free guidance."""

    name = "ddpm"
    kind = GeneratorKind.CONDITIONAL
    Config = DDPMConfig
    checkpointed = ("unet", "opt")
    ema_targets = ("unet",)
    config: DDPMConfig

    def build(self) -> None:
        from monai.networks.nets import DiffusionModelUNet
        from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

        c = self.config
        self.null_label = len(self.classes)  # the "no class" embedding of classifier-free guidance
        self.unet = DiffusionModelUNet(
            spatial_dims=2, in_channels=1, out_channels=1, channels=tuple(c.channels),
            attention_levels=tuple(c.attention_levels), num_res_blocks=c.num_res_blocks,
            num_head_channels=c.num_head_channels, norm_num_groups=c.norm_num_groups,
            num_class_embeds=len(self.classes) + 1).to(self.device)
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=c.lr)
        # schedulers hold no learned state; kept in a dict so that they are not saved as modules
        self.schedulers = {"train": DDPMScheduler(**_schedule_args(c)),
                           "sample": DDIMScheduler(**_schedule_args(c))}

    def train_step(self, batch: Batch) -> Losses:
        x, y = batch.x, batch.y
        sched = self.schedulers["train"]
        noise = torch.randn_like(x)
        t = torch.randint(0, sched.num_train_timesteps, (len(x),), device=self.device)
        drop = torch.rand(len(x), device=self.device) < self.config.label_dropout
        y = torch.where(drop, torch.full_like(y, self.null_label), y)
        pred = self.unet(sched.add_noise(x, noise, t), t, class_labels=y)
        loss = F.mse_loss(pred, noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}

    def _eps(self, net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
             scale: float) -> torch.Tensor:
        """Guided noise estimate (one network pass when the scale is 0 or 1, two otherwise)."""
        null = torch.full_like(labels, self.null_label)
        if scale == 0:
            return net(x, t, class_labels=null)
        if scale == 1:
            return net(x, t, class_labels=labels)
        cond, uncond = net(torch.cat([x, x]), torch.cat([t, t]), class_labels=torch.cat([labels, null])).chunk(2)
        return uncond + scale * (cond - uncond)

    def _denoise(self, x: torch.Tensor, top: torch.Tensor, labels: torch.Tensor, steps: int, scale: float,
                 rng: torch.Generator) -> torch.Tensor:
        """Run the guided DDIM chain of every image from its 0-based timestep ``top[i]`` to the clean image: the
        one loop of free sampling and of SDEdit (:mod:`cxraug.generators.ddim`)."""
        net = self.net("unet")
        chain = ddim.plan(top, steps)
        alphas = self.schedulers["sample"].alphas_cumprod
        for j in range(chain.steps):
            t, prev, active = chain.t[j], chain.prev[j], chain.active[j]
            moved = ddim.step(alphas, self._eps(net, x, t, labels, scale), t, prev, x, self.config.eta, rng)
            x = moved if bool(active.all()) else torch.where(active.reshape(-1, 1, 1, 1), moved, x)
        return x.clamp(-1, 1)

    def _generate(self, n: int, labels: torch.Tensor | None, source: torch.Tensor | None,
                  rng: torch.Generator) -> torch.Tensor:
        c = self.config
        x = torch.randn(n, 1, c.size, c.size, generator=rng, device=self.device)
        top = torch.full((n,), c.train_timesteps - 1, dtype=torch.long, device=self.device)
        return self._denoise(x, top, labels, c.sample_steps, c.guidance_scale, rng)

    def start_timestep(self, strength: float) -> int:
        """The 0-based timestep an edit of ``strength`` starts from: ``round(s * T) - 1``, the noise level after
        ``round(s * T)`` forward steps (``-1``: no noise at all, the edit returns its source)."""
        if not 0 < strength <= 1:
            raise CxraugError(f"edit strength must be in (0, 1], got {strength}")
        return round(strength * self.config.train_timesteps) - 1

    def edit(self, images: np.ndarray, labels: int | str | list | np.ndarray | None,
             strength: float | list[float] | np.ndarray, steps: int | None = None, guidance: float | None = None,
             seed: int = 0) -> np.ndarray:
        """SDEdit (Meng et al. 2022): noise each real uint8 image to the timestep of its ``strength`` with the
        forward process, then run the guided DDIM chain of sampling from there with its class ``labels`` (one per
        image, or one for all). ``strength`` is one value or one per image; 1 is free sampling (the source is not
        used; bit-identical to :meth:`sample` with the same seed). ``steps`` (DDIM steps of a whole chain; an
        edit takes at most that many) and ``guidance`` default to the config's ``sample_steps`` and
        ``guidance_scale``. EMA weights, deterministic for a ``seed``; images are resized to the model's size.
        Returns uint8 (n, S, S)."""
        c = self.config
        src = resize_uint8(np.asarray(images, dtype=np.uint8), c.size)
        n = len(src)
        strengths = np.broadcast_to(np.asarray(strength, dtype=float), (n,))
        top = torch.as_tensor([self.start_timestep(float(s)) for s in strengths], dtype=torch.long,
                              device=self.device)
        lab = self._labels(n, labels)
        k = c.sample_steps if steps is None else int(steps)
        if not 1 <= k <= c.train_timesteps:
            raise CxraugError(f"edit steps must be in [1, {c.train_timesteps}], got {k}")
        scale = c.guidance_scale if guidance is None else float(guidance)
        sched = self.schedulers["train"]

        def run(rows: slice, rng: torch.Generator) -> torch.Tensor:
            x0 = to_unit(src[rows]).to(self.device)
            noise = torch.randn(x0.shape, generator=rng, device=self.device)
            t = top[rows]
            noised = sched.add_noise(x0, noise, t.clamp(min=0))
            pure = (t == c.train_timesteps - 1).reshape(-1, 1, 1, 1)  # s = 1: the free sampler's pure noise
            clean = (t < 0).reshape(-1, 1, 1, 1)
            x = torch.where(pure, noise, torch.where(clean, x0, noised))
            return self._denoise(x, t, lab[rows], k, scale, rng)

        return self.batched(n, run, seed)
