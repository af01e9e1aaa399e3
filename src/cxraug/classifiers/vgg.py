"""torchvision VGG-16: with BatchNorm after every convolution (IIT report, default head ``iit-vgg16``, dropout
0.3) or without (the Keras VGG-16 of the Pisa study, head ``pisa-vgg16``). The head preset chooses.

From scratch the first convolution takes one channel; with ImageNet weights (``vgg16`` / ``vgg16_bn``) the
image is replicated to 3 channels and ImageNet-normalised. The backbone is ``features`` (five blocks, S/32);
the last block (after the fourth max pooling) is unfrozen for fine-tuning.
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn

from cxraug.classifiers.base import CLASSIFIERS, IMAGENET_MEAN, IMAGENET_STD, Backbone, InputAdapter, ModelSpec
from cxraug.classifiers.pretrained import load_torchvision_state


def arch(options: dict[str, Any]) -> str:
    return "vgg16_bn" if options.get("batch_norm", True) else "vgg16"


def build(in_channels: int, pretrained: bool, state: dict[str, torch.Tensor] | None, batch_norm: bool = True,
          **_: Any) -> Backbone:
    name = arch({"batch_norm": batch_norm})
    net = getattr(torchvision.models, name)(weights=None)
    if state is not None:
        load_torchvision_state(net, state, name)
    features = net.features
    if pretrained:
        adapter = InputAdapter(replicate=in_channels == 1, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    else:
        features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        adapter = InputAdapter()
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    last = tuple(str(i) for i in range(pools[3] + 1, len(features)))
    return Backbone(features, adapter, last_block=last)


CLASSIFIERS.register("vgg16")(ModelSpec(build, default_head="iit-vgg16", min_size=32, imagenet_arch=arch))
