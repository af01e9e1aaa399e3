"""The "inverted-bottleneck ResNet" baseline of the COVID-GAN report (IIT Kharagpur, section 5.3).

The report names the building blocks but no widths or kernel sizes; this implementation fixes them:

* ``ConvBNReLU(c_in, c_out, k, groups)``: Conv k x k (padding k//2) -> BatchNorm -> Dropout 0.1 -> ReLU.
* ``InvertedBottleneck(c)``: ConvBNReLU 1x1 expanding c -> 4c, depthwise ConvBNReLU 3x3, depthwise ConvBNReLU
  5x5 (the "varying kernel sizes"), then a 1x1 convolution 4c -> c and BatchNorm; the result is added to the input.
* ``Transit(c_in, c_out)``: Conv 3x3 stride 2 -> BatchNorm -> ReLU (halves the resolution).
* ``Block(c_in, c_out)``: two inverted bottlenecks and a transit; added to a 1x1 stride-2 convolution of the
  block's input.
* Network: stem Conv 3x3 (1 -> 32) -> BatchNorm -> ReLU, blocks 32 -> 64 -> 128 -> 256, then the ``linear`` head
  (global average pool -> Dense). The feature map is S/8 wide with 256 channels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cxraug.classifiers.base import CLASSIFIERS, Backbone, InputAdapter, ModelSpec

STEM = 32
WIDTHS = (64, 128, 256)
EXPANSION = 4
KERNELS = (1, 3, 5)
DROPOUT = 0.1


class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.Dropout(DROPOUT), nn.ReLU(inplace=True))


class InvertedBottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        wide = c * EXPANSION
        self.layers = nn.Sequential(
            ConvBNReLU(c, wide, KERNELS[0]),
            ConvBNReLU(wide, wide, KERNELS[1], groups=wide),
            ConvBNReLU(wide, wide, KERNELS[2], groups=wide),
            nn.Conv2d(wide, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class Transit(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(InvertedBottleneck(c_in), InvertedBottleneck(c_in), Transit(c_in, c_out))
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def build(in_channels: int, pretrained: bool, state: dict[str, torch.Tensor] | None, **_: Any) -> Backbone:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, STEM, 3, padding=1, bias=False), nn.BatchNorm2d(STEM),
                               nn.ReLU(inplace=True)]
    c_in = STEM
    for width in WIDTHS:
        layers.append(Block(c_in, width))
        c_in = width
    return Backbone(nn.Sequential(*layers), InputAdapter())


CLASSIFIERS.register("ib-resnet")(ModelSpec(build, default_head="linear", min_size=8))
