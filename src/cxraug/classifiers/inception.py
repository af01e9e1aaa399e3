"""torchvision InceptionV3 without the auxiliary classifier (as the Keras model of the StyleGAN2-ADA study),
so it runs at any size >= 75 px; the default head is ``fedoruk-inception``.

From scratch the first convolution takes one channel. The torchvision ImageNet weights were trained on inputs
scaled to [-1, 1] per channel (what torchvision's ``transform_input`` reconstructs), so with them the grayscale
[-1, 1] image is replicated to 3 channels unchanged (mean = std = 0.5 on the [0, 1] scale); the ``AuxLogits``
weights are ignored. The backbone ends at ``Mixed_7c`` (2048 channels), which is unfrozen for fine-tuning.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torchvision
from torch import nn

from cxraug.classifiers.base import CLASSIFIERS, Backbone, InputAdapter, ModelSpec
from cxraug.classifiers.pretrained import load_torchvision_state

_STAGES = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
           "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
           "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
TORCHVISION_INPUT = (0.5, 0.5, 0.5)


def build(in_channels: int, pretrained: bool, state: dict[str, torch.Tensor] | None, **_: Any) -> Backbone:
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=not pretrained,
                                          transform_input=False)
    if state is not None:
        load_torchvision_state(net, state, "inception_v3", drop_prefixes=("AuxLogits.",))
    if pretrained:
        adapter = InputAdapter(replicate=in_channels == 1, mean=TORCHVISION_INPUT, std=TORCHVISION_INPUT)
    else:
        net.Conv2d_1a_3x3.conv = nn.Conv2d(in_channels, 32, kernel_size=3, stride=2, bias=False)
        adapter = InputAdapter()
    body = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in _STAGES))
    return Backbone(body, adapter, last_block=("Mixed_7c",))


CLASSIFIERS.register("inception-v3")(
    ModelSpec(build, default_head="fedoruk-inception", min_size=75, imagenet_arch=lambda _o: "inception_v3")
)
