"""ACGAN ("CovidGAN"): one class-conditional GAN for all classes, with an auxiliary-classifier discriminator.

Architecture as in the Pisa study (after Waheed et al.'s CovidGAN, itself Brownlee's Keras ACGAN):

* Generator: z ~ N(0, I) (100 dims) -> dense -> ReLU -> ``s0 x s0 x g_width``; the label -> embedding (50)
  -> dense -> ``s0 x s0 x 1``; concatenated; ``k`` transposed convolutions (kernel 5, stride 2, "same"),
  channels halving from ``g_width`` (1024 -> 512 -> 256 -> 128 at 112 px), BatchNorm + ReLU between, tanh
  out. Weights are initialised N(0, 0.02) (the paper's "0.02 standard deviation").
* Discriminator: ``k`` blocks of convolution (kernel 3, **stride 2 in every block**) + BatchNorm + LeakyReLU(0.2)
  + Dropout(0.5), channels doubling from ``d_width`` (64 -> 128 -> 256 -> 512 at 112 px,
  capped at 8 x ``d_width``); flattened; two heads, real/fake (sigmoid, BCE) and class (softmax, CE).
  The paper states strides alternating between 1 and 2, but its feature maps (112 -> 56 -> 28 -> 14 -> 7)
  and its "about 2 M parameters" only fit stride 2 in every block, so that is what we build. The first block
  has no BatchNorm (as in DCGAN and the Keras ACGAN the study builds on): with it, a 32 px phantom run had not
  learned the Normal class after 600 steps (judge recognition 0.00), without it Normal was recognised at 0.93
  after 400 steps.

Output size: the number of up-sampling blocks ``k`` is the largest with ``size / 2**k`` a whole number >= 4
(unless ``up_blocks`` is given), so 56, 112 and 224 px start from 7 x 7 with 3, 4 and 5 blocks (the paper's
112 px has 4), 28 px starts from 7 x 7 with 2 blocks, and 32/64/128 px start from 4 x 4 with 3/4/5 blocks.
The small sizes are for tests and the cpu-scale protocol; ``g_width`` shrinks the model there.

Discriminator dropout is the paper's 0.5 by default. On 32 px phantoms (300 per class) that discriminator barely
tells real from fake (adversarial loss ~1.2-1.35, guessing is 1.39) and each class collapses to one grainy image
(coverage <= 0.06 up to 2400 steps); with ``dropout: 0`` and a generator EMA (``ema_decay: 0.99``) per-class
coverage reaches 0.46-0.72 at 6000 steps, about half to four fifths of real-vs-real (BENCHMARKS.md). Try both
when the samples of a class look alike.

ACGAN is known to peak and then collapse, so train with a per-class scorer
(``cxraug.metrics.scorer.make_scorer(real_images, real_labels)`` scores each class against its own real
images and averages): ``fit`` keeps the checkpoint with the lowest class-wise KID as ``best.pt``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Generator, GeneratorConfig, GeneratorKind, Losses
from cxraug.generators.dcgan import dcgan_init


class ACGANConfig(GeneratorConfig):
    """CovidGAN hyper-parameters (paper defaults: 112 px, batch 64, Adam 2e-4 / beta1 0.5)."""

    size: int = Field(112, ge=16, le=512, description="image size S; see the module docstring for valid sizes")
    z_dim: int = Field(100, ge=1, description="latent dimensions")
    embed_dim: int = Field(50, ge=1, description="label embedding dimensions")
    g_width: int = Field(1024, ge=8, description="channels of the generator's first s0 x s0 map")
    d_width: int = Field(64, ge=4, description="channels of the discriminator's first block")
    up_blocks: int | None = Field(None, ge=1, le=7, description="up-sampling blocks; None = from size")
    dropout: float = Field(0.5, ge=0, lt=1, description="discriminator dropout (paper 0.5; 0 if a class collapses)")
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    class_weight: float = Field(1.0, ge=0, description="weight of the auxiliary class loss (D and G)")


def up_blocks_for(size: int, up_blocks: int | None = None) -> tuple[int, int]:
    """``(blocks, s0)`` for an output size: the largest ``k`` with ``size / 2**k`` a whole number >= 4."""
    if up_blocks is not None:
        if size % (2 ** up_blocks) or size // (2 ** up_blocks) < 2:
            raise CxraugError(f"acgan: size {size} is not divisible into {up_blocks} up-sampling blocks "
                              f"(size / 2**blocks must be a whole number >= 2)")
        return up_blocks, size // (2 ** up_blocks)
    k = 0
    while size % (2 ** (k + 1)) == 0 and size // (2 ** (k + 1)) >= 4:
        k += 1
    if k == 0:
        raise CxraugError(f"acgan: size {size} cannot be reached by stride-2 up-sampling from a map of 4 px or "
                          f"more; use e.g. 28, 32, 56, 64, 112, 128 or 224")
    return k, size // (2 ** k)


def init_weights(m: nn.Module) -> None:
    """DCGAN initialisation (:func:`~cxraug.generators.dcgan.dcgan_init`), dense layers N(0, 0.02) as well."""
    dcgan_init(m)
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


class ACGANGenerator(nn.Module):
    """(z, label) -> image in [-1, 1]."""

    def __init__(self, n_classes: int, z_dim: int, embed_dim: int, width: int, blocks: int, s0: int) -> None:
        super().__init__()
        self.s0, self.width = s0, width
        self.label = nn.Sequential(nn.Embedding(n_classes, embed_dim), nn.Linear(embed_dim, s0 * s0))
        self.latent = nn.Sequential(nn.Linear(z_dim, width * s0 * s0), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c_in = width + 1
        for i in range(blocks):
            last = i == blocks - 1
            c_out = 1 if last else max(8, width // 2 ** (i + 1))
            layers.append(nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.up = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lab = self.label(y).view(-1, 1, self.s0, self.s0)
        lat = self.latent(z).view(-1, self.width, self.s0, self.s0)
        return self.up(torch.cat([lat, lab], 1))


class ACGANDiscriminator(nn.Module):
    """image -> (real/fake logit (B,), class logits (B, C))."""

    def __init__(self, n_classes: int, size: int, width: int, blocks: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(blocks):
            c_out = width * 2 ** min(i, 3)
            norm = [nn.BatchNorm2d(c_out)] if i > 0 else []
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), *norm, nn.LeakyReLU(0.2, inplace=True),
                       nn.Dropout(dropout)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        n_feat = c_in * (size // 2 ** blocks) ** 2
        self.adv = nn.Linear(n_feat, 1)
        self.cls = nn.Linear(n_feat, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.adv(h).squeeze(1), self.cls(h)


@GENERATORS.register("acgan")
class ACGAN(Generator):
    """Class-conditional auxiliary-classifier GAN (CovidGAN); sample with ``sample(n, label=...)``."""

    name = "acgan"
    kind = GeneratorKind.CONDITIONAL
    Config = ACGANConfig
    checkpointed = ("G", "D", "opt_g", "opt_d")
    ema_targets = ("G",)
    config: ACGANConfig

    def build(self) -> None:
        c, k = self.config, len(self.classes)
        blocks, s0 = up_blocks_for(c.size, c.up_blocks)
        self.G = ACGANGenerator(k, c.z_dim, c.embed_dim, c.g_width, blocks, s0).to(self.device)
        self.D = ACGANDiscriminator(k, c.size, c.d_width, blocks, c.dropout).to(self.device)
        self.G.apply(init_weights)
        self.D.apply(init_weights)
        betas = (c.beta1, c.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=c.lr, betas=betas)

    def train_step(self, batch: Batch) -> Losses:
        c = self.config
        b = len(batch.x)
        z = torch.randn(b, c.z_dim, device=self.device)
        y_fake = torch.randint(0, len(self.classes), (b,), device=self.device)
        fake = self.G(z, y_fake)
        ones, zeros = torch.ones(b, device=self.device), torch.zeros(b, device=self.device)

        # discriminator: real and fake batches in separate passes (BatchNorm statistics per batch, as in Keras)
        self.opt_d.zero_grad(set_to_none=True)
        adv_r, cls_r = self.D(batch.x)
        adv_f, cls_f = self.D(fake.detach())
        d_adv = F.binary_cross_entropy_with_logits(adv_r, ones) + F.binary_cross_entropy_with_logits(adv_f, zeros)
        d_cls = F.cross_entropy(cls_r, batch.y) + F.cross_entropy(cls_f, y_fake)
        (d_adv + c.class_weight * d_cls).backward()
        self.opt_d.step()

        # generator: fool the real/fake head and be classified as the requested label
        self.opt_g.zero_grad(set_to_none=True)
        adv_g, cls_g = self.D(fake)
        g_adv = F.binary_cross_entropy_with_logits(adv_g, ones)
        g_cls = F.cross_entropy(cls_g, y_fake)
        (g_adv + c.class_weight * g_cls).backward()
        self.opt_g.step()
        acc_real = (cls_r.argmax(1) == batch.y).float().mean()
        return {"d_adv": d_adv.detach(), "d_cls": d_cls.detach(), "g_adv": g_adv.detach(), "g_cls": g_cls.detach(),
                "d_cls_acc_real": acc_real.detach()}

    def _generate(self, n: int, labels: torch.Tensor | None, source: torch.Tensor | None,
                  rng: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.z_dim, generator=rng, device=self.device)
        return self.net("G")(z, labels)
