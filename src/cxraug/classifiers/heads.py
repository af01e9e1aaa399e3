"""Head presets: the papers put different heads on one backbone, so heads are named and chosen separately.

Every head maps the backbone's feature map ``(N, C, h, w)`` to logits and ends with ``nn.Linear``; the softmax
of the papers is in the loss (cross-entropy) and in :meth:`TrainedClassifier.predict_proba`.

| preset | layers | source |
|---|---|---|
| ``linear`` | global average pool -> Dense | default for ResNets and the inverted-bottleneck ResNet |
| ``max-linear`` | global max pool -> Dense | simplified ResNet-18 (IIT report: average pooling replaced by max) |
| ``pisa-cnn`` | Flatten -> Dense 128 ReLU -> Dropout 0.5 -> Dense | Pisa custom CNN |
| ``pisa-vgg16`` | Flatten -> Dense 128 ReLU -> Dropout 0.5 -> Dense; VGG-16 without BatchNorm (Keras) | Pisa study |
| ``iit-vgg16`` | global average pool -> 3 x (Dense 4096, BatchNorm, ReLU, Dropout 0.3) -> Dense; VGG-16 with BatchNorm | IIT report |
| ``pisa-resnet50`` | global average pool -> Dense 128 ReLU -> Dense 64 ReLU -> Dropout 0.5 -> Dense | Pisa study |
| ``york-resnet50`` | global average pool -> Dense | York Pix2Pix study |
| ``fedoruk-inception`` | Flatten -> Dense 10 ELU -> Dense 20 ELU -> Dense | StyleGAN2-ADA (Warsaw) study |

The IIT report's "adaptive average pool" is taken to 1x1 (torchvision uses 7x7, which at 64 px would only repeat
a 2x2 map and cost 100 M parameters). The dropout rate of the Pisa heads is not published; 0.5 is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any, Callable

from torch import nn

from cxraug.registry import Registry

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class HeadPreset:
    """A head builder ``(feature_shape, num_classes) -> nn.Sequential`` and what it implies for the backbone."""

    build: Callable[[Shape, int], nn.Sequential]
    models: tuple[str, ...] = ()  # backbones it is defined for; () = any
    backbone_options: dict[str, Any] = field(default_factory=dict)


HEADS: Registry[HeadPreset] = Registry("head preset")


def _pooled_linear(shape: Shape, num_classes: int, pool: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(pool(1), nn.Flatten(), nn.Linear(shape[0], num_classes))


def gap_linear(shape: Shape, num_classes: int) -> nn.Sequential:
    """Global average pool -> Dense."""
    return _pooled_linear(shape, num_classes, nn.AdaptiveAvgPool2d)


def gmp_linear(shape: Shape, num_classes: int) -> nn.Sequential:
    """Global max pool -> Dense."""
    return _pooled_linear(shape, num_classes, nn.AdaptiveMaxPool2d)


def flatten_dense128(shape: Shape, num_classes: int) -> nn.Sequential:
    """Flatten -> Dense 128 ReLU -> Dropout 0.5 -> Dense (Pisa custom CNN and Pisa VGG-16)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(prod(shape), 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(128, num_classes))


def iit_vgg16(shape: Shape, num_classes: int) -> nn.Sequential:
    """Global average pool -> three Dense 4096 (BatchNorm, ReLU, Dropout 0.3) -> Dense."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    width = shape[0]
    for _ in range(3):
        layers += [nn.Linear(width, 4096), nn.BatchNorm1d(4096), nn.ReLU(inplace=True), nn.Dropout(0.3)]
        width = 4096
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def pisa_resnet50(shape: Shape, num_classes: int) -> nn.Sequential:
    """Global average pool -> Dense 128 ReLU -> Dense 64 ReLU -> Dropout 0.5 -> Dense."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(shape[0], 128), nn.ReLU(inplace=True),
                         nn.Linear(128, 64), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(64, num_classes))


def fedoruk_inception(shape: Shape, num_classes: int) -> nn.Sequential:
    """Flatten -> Dense 10 ELU -> Dense 20 ELU -> Dense."""
    return nn.Sequential(nn.Flatten(), nn.Linear(prod(shape), 10), nn.ELU(), nn.Linear(10, 20), nn.ELU(),
                         nn.Linear(20, num_classes))


HEADS.register("linear")(HeadPreset(gap_linear))
HEADS.register("max-linear")(HeadPreset(gmp_linear))
HEADS.register("pisa-cnn")(HeadPreset(flatten_dense128))
HEADS.register("pisa-vgg16")(HeadPreset(flatten_dense128, ("vgg16",), {"batch_norm": False}))
HEADS.register("iit-vgg16")(HeadPreset(iit_vgg16, ("vgg16",), {"batch_norm": True}))
HEADS.register("pisa-resnet50")(HeadPreset(pisa_resnet50))
HEADS.register("york-resnet50")(HeadPreset(gap_linear))
HEADS.register("fedoruk-inception")(HeadPreset(fedoruk_inception))
