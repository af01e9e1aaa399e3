"""The custom CNN of the Pisa study (CovidGAN study, section 6.2).

BatchNorm on the input -> Conv 3x3 64 ("same") ReLU -> MaxPool 2 -> Conv 3x3 64 ("same") ReLU -> MaxPool 2 ->
Dropout -> Conv 3x3 32 ("valid") ReLU -> MaxPool 2 -> Dropout, then the ``pisa-cnn`` head (Flatten -> Dense 128
ReLU -> Dropout -> Dense). The study does not publish dropout rates: 0.25 after the convolutions, 0.5 in the
head. Built for 224x224x3 it has the published 3,043,695 parameters when the BatchNorm running mean and
variance are counted as Keras counts them (3,043,689 trainable + 6).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cxraug.classifiers.base import CLASSIFIERS, Backbone, InputAdapter, ModelSpec

CONV_DROPOUT = 0.25


def build(in_channels: int, pretrained: bool, state: dict[str, torch.Tensor] | None, **_: Any) -> Backbone:
    """The convolutional part (the head is the ``pisa-cnn`` preset)."""
    body = nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.Conv2d(in_channels, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(CONV_DROPOUT),
        nn.Conv2d(64, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(CONV_DROPOUT),
    )
    return Backbone(body, InputAdapter())


CLASSIFIERS.register("custom-cnn")(ModelSpec(build, default_head="pisa-cnn", min_size=16))
