"""The "simplified ResNet-18" baseline of the COVID-GAN report (IIT Kharagpur, section 5.2).

The report gives no widths or kernel sizes; this implementation fixes them as follows. Seven 3x3 convolutions,
each followed by BatchNorm and ReLU, widths capped at 256 (ResNet-18 goes on to 512):

* three residual stages of two convolutions each, widths 64, 128, 256; the first convolution of a stage (layers
  1, 3, 5) is followed by Dropout 0.3, the second (layers 2, 4, 6) by 2x2 max pooling, taken after the residual
  addition (the shortcut is a 1x1 convolution + BatchNorm where the width changes);
* a final 256-wide convolution (layer 7);
* global *max* pooling instead of average pooling and a single linear layer (the ``max-linear`` head).

The feature map is S/8 wide with 256 channels; :meth:`features` is 256-d.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cxraug.classifiers.base import CLASSIFIERS, Backbone, InputAdapter, ModelSpec

WIDTHS = (64, 128, 256)
DROPOUT = 0.3


def conv_bn(c_in: int, c_out: int, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


class Stage(nn.Module):
    """conv-BN-ReLU-Dropout, conv-BN, + shortcut, ReLU, MaxPool 2."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.first = nn.Sequential(*conv_bn(c_in, c_out), nn.ReLU(inplace=True), nn.Dropout(DROPOUT))
        self.second = nn.Sequential(*conv_bn(c_out, c_out))
        self.shortcut = nn.Sequential(*conv_bn(c_in, c_out, 1)) if c_in != c_out else nn.Identity()
        self.out = nn.Sequential(nn.ReLU(inplace=True), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.second(self.first(x)) + self.shortcut(x))


def build(in_channels: int, pretrained: bool, state: dict[str, torch.Tensor] | None, **_: Any) -> Backbone:
    stages: list[nn.Module] = []
    c_in = in_channels
    for width in WIDTHS:
        stages.append(Stage(c_in, width))
        c_in = width
    body = nn.Sequential(*stages, *conv_bn(c_in, WIDTHS[-1]), nn.ReLU(inplace=True))
    return Backbone(body, InputAdapter())


CLASSIFIERS.register("simple-resnet18")(ModelSpec(build, default_head="max-linear", min_size=8))
