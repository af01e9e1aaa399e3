"""VAE (report architecture, two-stage fit), conv-VAE, and the VAE-GAN's gradient routing and feature loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from cxraug.data.imageset import ImageSet
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch


def test_vae_architecture_matches_the_report() -> None:
    gen = GENERATORS.get("vae")()
    c = gen.config
    assert (c.size, c.hidden, c.latent_dim) == (100, 400, 20)
    lin = [m for m in gen.modules()["encoder"].modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(10000, 400), (400, 20), (400, 20)]
    lin = [m for m in gen.decoder.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(20, 400), (400, 10000)]
    img = gen.sample(3, seed=0)
    assert img.shape == (3, 100, 100) and img.dtype == np.uint8


def _two_classes(n: int = 8, size: int = 16) -> ImageSet:
    imgs = np.concatenate([np.full((n, size, size), 20, np.uint8), np.full((n, size, size), 230, np.uint8)])
    return ImageSet(imgs, np.repeat([0, 1], n), ["Normal", "COVID"])


def test_vae_pretrains_on_all_classes_then_fine_tunes(monkeypatch, tmp_path) -> None:
    with pytest.raises(ValidationError, match="target_class"):
        GENERATORS.get("vae").Config(pretrain_steps=3)
    gen = GENERATORS.get("vae")({"size": 16, "hidden": 16, "latent_dim": 2, "batch_size": 4, "steps": 7,
                                 "pretrain_steps": 3, "target_class": "covid"})
    train = _two_classes()
    assert len(gen.training_set(train, "COVID")) == 16  # whole fold: pre-training uses every class
    seen: list[set] = []
    real = gen.train_step
    monkeypatch.setattr(gen, "train_step",
                        lambda b: seen.append(set(((b.x + 1) * 127.5).round().int().flatten().tolist())) or real(b))
    gen.fit(gen.training_set(train, "COVID"), tmp_path)
    assert len(seen) == 7
    assert set().union(*seen[:3]) == {20, 230}  # pre-training saw both classes
    assert all(s == {230} for s in seen[3:])  # fine-tuning only the target class
    plain = GENERATORS.get("vae")({"size": 16})
    assert plain.training_set(train, "covid").counts() == {"Normal": 0, "COVID": 8}


def test_conv_vae_shapes() -> None:
    for size in (32, 64):
        gen = GENERATORS.get("conv-vae")({"size": size, "channels": 8})
        mu, logvar = gen.encoder(torch.randn(2, 1, size, size))
        assert mu.shape == logvar.shape == (2, 128)
        assert gen.decoder(mu).shape == (2, 1, size, size)


class _ToyD(nn.Module):
    """Discriminator stand-in: features are 4x4 average pools (or constant), the logit a fixed linear map."""

    def __init__(self, size: int, constant_features: bool) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(size * size))
        self.constant = constant_features
        self.features = self._features

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.constant:
            return torch.ones(len(x), 4, device=x.device) * self.w[:4]
        return F.avg_pool2d(x, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) * self.w).sum(1) / x[0].numel()


def _vaegan(**over):
    return GENERATORS.get("vae-gan")({"size": 16, "batch_size": 4, "g_channels": 8, "d_channels": 8,
                                      "latent_dim": 8, **over})


def _batch() -> Batch:
    return Batch(x=torch.rand(4, 1, 16, 16) * 2 - 1, y=torch.zeros(4, dtype=torch.long))


def _changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_vae_gan_encoder_gets_no_gradient_from_the_gan_loss() -> None:
    # KL off and features independent of the image: the only path from the encoder is through the GAN loss
    gen = _vaegan(kl_weight=0.0)
    gen.D = _ToyD(16, constant_features=True)
    enc = [p.detach().clone() for p in gen.E.parameters()]
    dec = [p.detach().clone() for p in gen.G.parameters()]
    losses = gen.train_step(_batch())
    assert losses["rec"] == 0.0 and losses["gan"] > 0
    assert not _changed(enc, gen.E), "the GAN loss reached the encoder"
    assert _changed(dec, gen.G), "the decoder must learn from the GAN loss"
    # positive control: with image-dependent features the reconstruction loss moves the encoder
    gen = _vaegan(kl_weight=0.0)
    gen.D = _ToyD(16, constant_features=False)
    enc = [p.detach().clone() for p in gen.E.parameters()]
    gen.train_step(_batch())
    assert _changed(enc, gen.E)


def test_vae_gan_reconstruction_is_on_discriminator_features() -> None:
    gen = _vaegan()
    gen.D = _ToyD(16, constant_features=False)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    x_rec = torch.rand(4, 1, 16, 16) * 2 - 1
    mu, logvar = torch.zeros(4, 8), torch.zeros(4, 8)
    parts = gen.encoder_decoder_losses(x, mu, logvar, x_rec, x_rec)
    by_hand = 0.5 * (F.avg_pool2d(x_rec, 4) - F.avg_pool2d(x, 4)).pow(2).flatten(1).sum(1).mean()
    pixelwise = 0.5 * (x_rec - x).pow(2).flatten(1).sum(1).mean()
    assert torch.allclose(parts["rec"], by_hand)
    assert not torch.allclose(parts["rec"], pixelwise)
    assert parts["kl"].item() == 0.0  # N(0, I) posterior


def test_vae_gan_encoder_is_resnet18_with_one_channel_stem() -> None:
    gen = _vaegan()
    trunk = gen.E.trunk
    assert trunk.conv1.in_channels == 1
    assert [m.out_features for m in trunk.fc if isinstance(m, nn.Linear)] == [512, 512]
    assert gen.E.mu.out_features == gen.E.logvar.out_features == 8
    assert sum(isinstance(m, nn.Conv2d) for m in trunk.modules()) == 20  # ResNet-18: 17 convs + 3 downsample
    assert gen.D.head is not None and gen.G.latent_dim == 8  # DCGAN decoder and discriminator


def test_vae_gan_pretrained_weights_missing_is_one_clear_error(monkeypatch) -> None:
    import torchvision.models

    from cxraug.errors import MissingWeightsError

    def offline(*args, **kwargs):
        if kwargs.get("weights") is not None:
            raise OSError("no network")
        return real(*args, **kwargs)

    real = torchvision.models.resnet18
    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    with pytest.raises(MissingWeightsError, match="pretrained=false"):
        _vaegan(pretrained=True)
    assert _vaegan(pretrained=False).E.trunk.conv1.in_channels == 1
