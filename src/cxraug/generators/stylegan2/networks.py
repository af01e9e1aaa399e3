"""StyleGAN2 networks for one-channel images, with class conditioning.

Generator: a mapping network (normalised z and an embedded class label -> w), a synthesis network that starts from
a learned constant, runs modulated/demodulated 3x3 convolutions (one grouped convolution per layer), adds
per-pixel noise with a learned strength per layer, and sums upsampled skip ("toRGB", one channel) outputs.
Discriminator: residual blocks, minibatch standard deviation, projection-style class conditioning.
All weights use the equalised learning rate (stored N(0, 1), scaled by 1/sqrt(fan_in) at run time).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) with gain sqrt(2), keeping activations near unit variance."""
    return F.leaky_relu(x, 0.2) * SQRT2


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square (the "pixel norm" applied to z and the class embedding)."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: ``channel_base / resolution``, capped at ``channel_max`` (at least 1)."""
    return max(1, min(channel_base // resolution, channel_max))


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate and an optional learning-rate multiplier."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return lrelu(y) if self.activate else y


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate, 'same' padding and an optional leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool = True, activate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)
        return lrelu(y) if self.activate else y


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     eps: float = 1e-8) -> torch.Tensor:
    """Convolve each sample with its own weights ``weight * styles[b]`` (scaled per input channel), optionally
    demodulated (each output filter rescaled to unit L2 norm), as one grouped convolution over the batch.

    ``x`` (B, I, H, W), ``weight`` (O, I, k, k), ``styles`` (B, I) -> (B, O, H, W) ('same' padding).
    """
    b, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    wts = weight.unsqueeze(0) * styles[:, None, :, None, None]  # (B, O, I, k, k)
    if demodulate:
        wts = wts * torch.rsqrt(wts.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    out = F.conv2d(x.reshape(1, b * cin, h, w), wts.reshape(b * cout, cin, kh, kw), padding=kh // 2, groups=b)
    return out.reshape(b, cout, h, w)


class ModulatedConv2d(nn.Module):
    """A modulated convolution whose styles come from ``w`` through a learned affine map (bias 1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return modulated_conv2d(x, self.weight * self.weight_gain, self.affine(w), self.demodulate)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class SynthesisLayer(nn.Module):
    """(Upsample ->) modulated 3x3 conv -> + scaled per-pixel noise -> + bias -> leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim)
        self.upsample = upsample
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        if self.upsample:
            x = upsample2x(x)
        x = self.conv(x, w)
        noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype, generator=rng)
        return lrelu(x + noise * self.noise_strength + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to one channel, not demodulated (the skip output of a resolution)."""

    def __init__(self, in_ch: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 1, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class MappingNetwork(nn.Module):
    """z (normalised) concatenated with a normalised class embedding -> MLP (lr multiplier 0.01) -> w."""

    def __init__(self, z_dim: int, w_dim: int, n_classes: int, layers: int, lr_mul: float = 0.01) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.embed = EqualLinear(n_classes, w_dim)
        dims = [z_dim + w_dim] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activate=True)
                                   for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e = self.embed(F.one_hot(y, self.n_classes).to(z.dtype))
        return self.net(torch.cat([normalize_2nd_moment(z), normalize_2nd_moment(e)], dim=1))


class SynthesisNetwork(nn.Module):
    """Constant 4x4 input, two modulated convs per resolution (one at 4x4), skip-connection outputs.

    Takes one w per layer, ``ws`` (B, num_ws, w_dim); each toRGB shares its w with the next resolution's first
    conv, so ``num_ws = 2 * log2(size) - 2``.
    """

    def __init__(self, size: int, w_dim: int, channel_base: int, channel_max: int) -> None:
        super().__init__()
        res = [2 ** k for k in range(2, int(math.log2(size)) + 1)]
        ch = [channels(r, channel_base, channel_max) for r in res]
        self.const = nn.Parameter(torch.randn(ch[0], 4, 4))
        self.convs = nn.ModuleList([SynthesisLayer(ch[0], ch[0], w_dim)])
        self.torgbs = nn.ModuleList([ToRGB(ch[0], w_dim)])
        for prev, cur in zip(ch[:-1], ch[1:]):
            self.convs.append(SynthesisLayer(prev, cur, w_dim, upsample=True))
            self.convs.append(SynthesisLayer(cur, cur, w_dim))
            self.torgbs.append(ToRGB(cur, w_dim))
        self.num_ws = len(self.convs) + 1

    def forward(self, ws: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        img = None
        i = 0
        for block, torgb in enumerate(self.torgbs):
            for _ in range(1 if block == 0 else 2):
                x = self.convs[i](x, ws[:, i], rng)
                i += 1
            y = torgb(x, ws[:, i])
            img = y if img is None else upsample2x(img) + y
        return img


class StyleGenerator(nn.Module):
    """Mapping + synthesis. ``forward(z, y)`` -> images (B, 1, S, S), roughly in [-1, 1]."""

    def __init__(self, size: int, n_classes: int, z_dim: int, w_dim: int, mapping_layers: int,
                 channel_base: int, channel_max: int) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.mapping = MappingNetwork(z_dim, w_dim, n_classes, mapping_layers)
        self.synthesis = SynthesisNetwork(size, w_dim, channel_base, channel_max)

    def styles(self, z: torch.Tensor, y: torch.Tensor, mixing: float = 0.0) -> torch.Tensor:
        """Per-layer ``ws`` (B, num_ws, w_dim). With probability ``mixing`` the layers from a random cutoff on
        take the w of a second latent (style mixing regularisation), with the same class label."""
        n = self.synthesis.num_ws
        ws = self.mapping(z, y).unsqueeze(1).repeat(1, n, 1)
        if mixing > 0 and float(torch.rand(())) < mixing:
            cutoff = int(torch.randint(1, n, ()))
            ws[:, cutoff:] = self.mapping(torch.randn_like(z), y).unsqueeze(1)
        return ws

    def forward(self, z: torch.Tensor, y: torch.Tensor, mixing: float = 0.0,
                rng: torch.Generator | None = None) -> torch.Tensor:
        return self.synthesis(self.styles(z, y, mixing), rng)


def minibatch_std(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append one feature map: the standard deviation of features across a group of samples (averaged over
    channels and pixels). The group is the largest divisor of the batch not above ``group_size``."""
    b, c, h, w = x.shape
    g = min(group_size, b)
    while b % g:
        g -= 1
    y = x.reshape(g, b // g, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # (B/g, C, H, W)
    y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs with 2x average-pool downsampling, plus a 1x1 skip, summed / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = self.conv1(F.avg_pool2d(self.conv0(x), 2))
        return (skip + x) / SQRT2


class Discriminator(nn.Module):
    """Residual discriminator with minibatch std and projection conditioning:
    ``D(x, y) = <phi(x), embed(y)> / sqrt(dim)`` (one logit per image)."""

    def __init__(self, size: int, n_classes: int, channel_base: int, channel_max: int, mbstd_group: int) -> None:
        super().__init__()
        res = [2 ** k for k in range(int(math.log2(size)), 2, -1)]  # size, ..., 8
        self.n_classes = n_classes
        self.mbstd_group = mbstd_group
        self.from_rgb = EqualConv2d(1, channels(size, channel_base, channel_max), 1)
        self.blocks = nn.Sequential(*[DiscriminatorBlock(channels(r, channel_base, channel_max),
                                                         channels(r // 2, channel_base, channel_max)) for r in res])
        c4 = channels(4, channel_base, channel_max)
        self.conv = EqualConv2d(c4 + 1, c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, activate=True)
        self.out = EqualLinear(c4, c4)
        self.embed = EqualLinear(n_classes, c4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.from_rgb(x))
        h = self.conv(minibatch_std(h, self.mbstd_group))
        h = self.out(self.fc(h.flatten(1)))
        e = self.embed(F.one_hot(y, self.n_classes).to(h.dtype))
        return (h * e).sum(dim=1) / math.sqrt(h.shape[1])
