"""torchvision ResNet-18/34/50 with a one-channel stem (``conv1`` takes 1 channel) when trained from scratch.

With ImageNet weights the published 3-channel ``conv1`` is kept and the grayscale image is replicated to three
channels and ImageNet-normalised (:class:`~cxraug.classifiers.base.InputAdapter`). The backbone ends at
``layer4`` (the feature map); ``layer4`` is the block unfrozen for fine-tuning.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torchvision
from torch import nn

from cxraug.classifiers.base import CLASSIFIERS, IMAGENET_MEAN, IMAGENET_STD, Backbone, InputAdapter, ModelSpec
from cxraug.classifiers.pretrained import load_torchvision_state

_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _builder(arch: str):
    def build(in_channels: int, pretrained: bool, state: dict[str, torch.Tensor] | None, **_: Any) -> Backbone:
        net = getattr(torchvision.models, arch)(weights=None)
        if state is not None:
            load_torchvision_state(net, state, arch)
        if pretrained:
            adapter = InputAdapter(replicate=in_channels == 1, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        else:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            adapter = InputAdapter()
        body = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in _STAGES))
        return Backbone(body, adapter, last_block=("layer4",))

    return build


for _arch in ("resnet18", "resnet34", "resnet50"):
    CLASSIFIERS.register(_arch)(
        ModelSpec(_builder(_arch), default_head="linear", min_size=32, imagenet_arch=lambda _o, a=_arch: a)
    )
