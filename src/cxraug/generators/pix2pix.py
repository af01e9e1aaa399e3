"""Pix2Pix (Isola et al. 2017) translating source-class X-rays (Normal) into target-class X-rays (COVID).

As in the York study (after the TensorFlow pix2pix tutorial):

* U-Net generator: encoder blocks Conv(4, stride 2) + BatchNorm + LeakyReLU(0.2) (no BatchNorm on the first
  block, nor on the innermost one, whose map can be 1 x 1), channels 64 -> 128 -> 256 -> 512 -> 512...;
  decoder blocks ConvTranspose(4, stride 2) + BatchNorm + Dropout(0.5) (first three decoder blocks) + ReLU,
  with a skip connection from the mirrored encoder block; tanh out. Depth = the number of halvings of the
  size (at most 8): 256 px reaches 1 x 1 in 8 blocks, 224 px stops at 7 x 7 after 5, 64 px at 1 x 1 after 6.
* PatchGAN discriminator on the (input, output) pair stacked as two channels: Conv(4) blocks with BatchNorm +
  LeakyReLU(0.2) (no BatchNorm on the first), three of stride 2 (fewer below 64 px, so the patch grid stays
  >= 8 x 8 before the stride-1 layers), then one stride-1 block and a one-channel stride-1 convolution: one
  logit per patch. The York paper writes "ReLU" for its discriminator blocks; we keep Isola's LeakyReLU, a
  deliberate deviation (a ReLU discriminator passes no gradient through inactive units).
* Loss: D 0.5 * (BCE(real pair, 1) + BCE(fake pair, 0)); G BCE(fake pair, 1) + lambda * L1(output, target),
  lambda = 100. Adam 2e-4, beta1 0.5. Batch 16 by default (the tutorial used 1): sampling runs BatchNorm in
  eval mode on its running statistics, which are only meaningful when trained with batches of several images.
* Noise only as dropout (Isola): it stays on when sampling (``sample_dropout``), seeded from ``sample``'s seed.

Pairing (the classes are unpaired and the study does not say how it paired them), ``pairing``:

* ``random`` (default, as plausibly done): each source image gets a target image drawn at random every time it
  is used (a new random pairing every epoch);
* ``nearest``: each source image is paired with its nearest target image in a feature space (16 x 16
  area-downsampled pixels, each image normalised to zero mean and unit norm, i.e. cosine similarity);
* ``given``: a source and a target image with the same patient id are a pair (paired renderings of one
  patient, e.g. ``cxraug.data.phantom.draw_paired``).

Random horizontal flips and rotations of up to +-5 degrees are applied to each (source, target) pair jointly.

**Know the failure mode.** With random pairs and lambda = 100 the L1 term is minimised by the *pixel-wise
median/mean COVID image*, whatever the input: outputs drift towards one average COVID X-ray with the input's
layout only faintly kept, and their diversity collapses. Report the output diversity (PRDC coverage of the
translated images against real target images, ``cxraug.metrics``) next to any Pix2Pix result. Measured on paired
32 px phantoms (BENCHMARKS.md): coverage 0.12 with random pairs against 0.90 with given pairs, and with random
pairs an output is no more similar to its own patient's COVID rendering than to a stranger's (SSIM 0.68 vs 0.67).

Generation translates held-in source-class *training* images (:meth:`Pix2Pix.source_images`), never
validation or test images.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from cxraug.data.imageset import ImageSet
from cxraug.data.names import match_class
from cxraug.data.thumbnails import centre_rows, thumbnails, unit_rows
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Generator, GeneratorConfig, GeneratorKind, Losses
from cxraug.generators.dcgan import dcgan_init


class Pix2PixConfig(GeneratorConfig):
    """Pix2Pix hyper-parameters (paper defaults: 224 px, lambda 100, Adam 2e-4 / beta1 0.5)."""

    size: int = Field(224, ge=16, le=512, description="image size S (a multiple of 16)")
    batch_size: int = Field(16, ge=1)
    source: str = Field("Normal", description="input class")
    target: str = Field("COVID", description="output class")
    pairing: Literal["random", "nearest", "given"] = Field("random", description="see the module docstring")
    l1_weight: float = Field(100.0, ge=0, description="lambda of the L1 term")
    g_width: int = Field(64, ge=4, description="channels of the first U-Net block (x2 per block, max x8)")
    d_width: int = Field(64, ge=4, description="channels of the first PatchGAN block")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout of the first three decoder blocks")
    sample_dropout: bool = Field(True, description="keep decoder dropout on when sampling (Isola's noise)")
    flip: bool = Field(True, description="random horizontal flips")
    rotate: float = Field(5.0, ge=0, le=45, description="random rotation range in degrees (+-)")
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)


def unet_depth(size: int) -> int:
    """Encoder blocks: the number of times ``size`` halves evenly, at most 8; at least 4 are required."""
    k = 0
    while k < 8 and size % (2 ** (k + 1)) == 0:
        k += 1
    if k < 4:
        raise CxraugError(f"pix2pix: size {size} must be a multiple of 16 (e.g. 32, 64, 128, 224, 256)")
    return k


class UNetGenerator(nn.Module):
    """Source image (B, 1, S, S) -> translated image (B, 1, S, S) in [-1, 1]."""

    def __init__(self, size: int, width: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        depth = unet_depth(size)
        ch = [width * 2 ** min(i, 3) for i in range(depth)]
        self.down = nn.ModuleList()
        c_in = 1
        for i, c in enumerate(ch):
            norm = [nn.BatchNorm2d(c)] if 0 < i < depth - 1 else []
            self.down.append(nn.Sequential(nn.Conv2d(c_in, c, 4, 2, 1, bias=not norm), *norm,
                                           nn.LeakyReLU(0.2, inplace=True)))
            c_in = c
        self.up = nn.ModuleList()  # innermost first; block j > 0 sees its input concatenated with a skip
        for j, i in enumerate(reversed(range(depth))):
            c_in = ch[i] if j == 0 else 2 * ch[i]
            if i == 0:
                self.up.append(nn.Sequential(nn.ConvTranspose2d(c_in, 1, 4, 2, 1), nn.Tanh()))
                continue
            drop = [nn.Dropout(dropout)] if j < 3 and dropout > 0 else []
            self.up.append(nn.Sequential(nn.ConvTranspose2d(c_in, ch[i - 1], 4, 2, 1, bias=False),
                                         nn.BatchNorm2d(ch[i - 1]), *drop, nn.ReLU(inplace=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](skips.pop())
        for block in self.up[1:]:
            x = block(torch.cat([x, skips.pop()], 1))
        return x


class PatchDiscriminator(nn.Module):
    """(source, image) pair -> one real/fake logit per patch, (B, 1, P, P)."""

    def __init__(self, size: int, width: int = 64) -> None:
        super().__init__()
        n_down = 1
        while n_down < 3 and size // 2 ** (n_down + 1) >= 8:
            n_down += 1
        layers: list[nn.Module] = []
        c_in = 2
        for i in range(n_down + 1):  # n_down stride-2 blocks, then one stride-1 block
            c = width * 2 ** min(i, 3)
            norm = [nn.BatchNorm2d(c)] if i > 0 else []
            layers += [nn.Conv2d(c_in, c, 4, 2 if i < n_down else 1, 1, bias=not norm), *norm,
                       nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        layers.append(nn.Conv2d(c_in, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([source, image], 1))


def _thumbnail_features(images: np.ndarray) -> torch.Tensor:
    """16 x 16 area-downsampled images, each normalised to zero mean and unit norm (cosine space)."""
    return unit_rows(centre_rows(torch.as_tensor(thumbnails(images, 16, "mean"))), 1e-6)


@GENERATORS.register("pix2pix")
class Pix2Pix(Generator):
    """Conditional image-to-image GAN: ``sample(n, source=uint8 source-class images)`` -> target-class images."""

    name = "pix2pix"
    kind = GeneratorKind.TRANSLATION
    Config = Pix2PixConfig
    checkpointed = ("G", "D", "opt_g", "opt_d")
    ema_targets = ("G",)
    config: Pix2PixConfig

    def build(self) -> None:
        c = self.config
        self.source_index = match_class(c.source, self.classes)
        self.target_index = match_class(c.target, self.classes)
        if self.source_index == self.target_index:
            raise CxraugError(f"pix2pix: source and target are the same class ({c.source!r})")
        self.G = UNetGenerator(c.size, c.g_width, c.dropout).to(self.device)
        self.D = PatchDiscriminator(c.size, c.d_width).to(self.device)
        self.G.apply(dcgan_init)
        self.D.apply(dcgan_init)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self._pairs_of: ImageSet | None = None
        self._pair_cache: tuple[np.ndarray, np.ndarray | None, np.ndarray] | None = None

    @property
    def source_class(self) -> str:
        return self.classes[self.source_index]

    @property
    def target_class(self) -> str:
        return self.classes[self.target_index]

    def source_images(self, train: ImageSet) -> np.ndarray:
        """The real source-class images of a training fold: what generation translates."""
        idx = (train.labels == match_class(self.source_class, train.classes)) & ~train.synthetic
        return train.images[idx]

    # ----------------------------------------------------------------- pairing and batches
    def _pairs(self, train: ImageSet) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(source indices, paired target index per source or None for random, target pool) into ``train``."""
        if self._pairs_of is train:
            return self._pair_cache
        real = ~train.synthetic
        src = np.flatnonzero((train.labels == match_class(self.source_class, train.classes)) & real)
        tgt = np.flatnonzero((train.labels == match_class(self.target_class, train.classes)) & real)
        if len(src) == 0 or len(tgt) == 0:
            raise CxraugError(f"pix2pix needs real {self.source_class!r} and {self.target_class!r} images in the "
                              f"training set (got {len(src)} and {len(tgt)})")
        paired: np.ndarray | None = None
        if self.config.pairing == "nearest":
            sim = _thumbnail_features(train.images[src]) @ _thumbnail_features(train.images[tgt]).T
            paired = tgt[sim.argmax(1).numpy()]
        elif self.config.pairing == "given":
            first = {}
            for i in tgt:
                first.setdefault(train.patient_ids[i], i)
            keep = [k for k, i in enumerate(src) if train.patient_ids[i] in first]
            if not keep:
                raise CxraugError("pix2pix pairing 'given' needs source and target images that share patient ids "
                                  "(one patient rendered in both classes); none do")
            src = src[keep]
            paired = np.array([first[train.patient_ids[i]] for i in src])
        self._pairs_of, self._pair_cache = train, (src, paired, tgt)
        return self._pair_cache

    def next_batch(self, train: ImageSet) -> Batch:
        """Source images (epoch-wise permutation) with their paired or random targets, jointly augmented."""
        src, paired, tgt = self._pairs(train)
        pick = self.next_indices(len(src))
        if paired is None:
            t_idx = self.shard(tgt[torch.randint(len(tgt), (len(pick),), generator=self._data_rng).numpy()])
        else:
            t_idx = self.shard(paired[pick])
        pick = self.shard(pick)
        b = len(pick)
        pair = torch.as_tensor(np.stack([train.images[src[pick]], train.images[t_idx]], 1)).to(self.device)
        pair = self._augment(pair.float().div_(127.5).sub_(1.0))
        y = torch.full((b,), self.target_index, dtype=torch.long, device=self.device)
        return Batch(x=pair[:, 1:], y=y, source=pair[:, :1])

    def _augment(self, pair: torch.Tensor) -> torch.Tensor:
        """The same random flip and rotation for both channels of each (source, target) pair."""
        import kornia.augmentation as K

        ops: list[nn.Module] = []
        if self.config.flip:
            ops.append(K.RandomHorizontalFlip(p=0.5))
        if self.config.rotate > 0:
            ops.append(K.RandomAffine(degrees=self.config.rotate, padding_mode="border", p=1.0))
        for op in ops:
            pair = op(pair)
        return pair

    # ----------------------------------------------------------------- training and sampling
    def train_step(self, batch: Batch) -> Losses:
        src, tgt = batch.source, batch.x
        fake = self.G(src)
        self.opt_d.zero_grad(set_to_none=True)
        d_real = self.D(src, tgt)
        d_fake = self.D(src, fake.detach())
        loss_d = 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                        + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        loss_d.backward()
        self.opt_d.step()

        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        d_gen = self.D(src, fake)
        g_adv = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
        g_l1 = F.l1_loss(fake, tgt)
        (g_adv + self.config.l1_weight * g_l1).backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        return {"loss_d": loss_d.detach(), "g_adv": g_adv.detach(), "g_l1": g_l1.detach()}

    def _generate(self, n: int, labels: torch.Tensor | None, source: torch.Tensor | None,
                  rng: torch.Generator) -> torch.Tensor:
        g = self.net("G")
        if not self.config.sample_dropout:
            return g(source)
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=rng, device=rng.device))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for m in g.modules():
                if isinstance(m, nn.Dropout):
                    m.train()
            try:
                return g(source)
            finally:
                for m in g.modules():
                    if isinstance(m, nn.Dropout):
                        m.eval()

    def eval_samples(self, n: int, train: ImageSet) -> tuple[np.ndarray, np.ndarray | None]:
        """Translations of the first ``n`` source training images (cycled), labelled as the target class."""
        src = self.source_images(train)
        return self.sample(n, source=src[np.arange(n) % len(src)], seed=10_000), np.full(n, self.target_index)

    def save_grid(self, path, n: int = 8) -> None:  # noqa: ANN001 - same signature as the base
        """Rows: source images, their translations (fixed dropout seed) - comparable across steps."""
        from torchvision.utils import save_image

        from cxraug import io

        if self._pairs_of is None:
            return
        train, (src, _, _) = self._pairs_of, self._pair_cache
        sources = train.images[src[:n]]
        out = self.sample(len(sources), source=sources, seed=1234)
        t = torch.as_tensor(np.concatenate([sources, out])).unsqueeze(1).float() / 255.0
        path.parent.mkdir(parents=True, exist_ok=True)
        with io.atomic_path(path) as tmp:
            save_image(t, tmp, nrow=len(sources), format="png")
