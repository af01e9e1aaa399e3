"""The classifier skeleton shared by every model: input adapter -> backbone -> head body -> final Linear.

* Input: one-channel float images ``(N, 1, S, S)`` in [-1, 1] (:func:`cxraug.data.imageset.to_unit`).
* :class:`InputAdapter`: identity for models trained from scratch (their first convolution takes one channel);
  for ImageNet weights the grayscale image is **replicated to 3 channels** (the RGB first convolution is kept as
  published) and normalised the way the weights were trained (ImageNet mean/std for ResNet and VGG).
* Backbone: image -> feature map ``(N, C, h, w)``. Head body: everything of the head up to its last layer.
  :meth:`Classifier.features` returns the penultimate activations (input of the final Linear), e.g. the 512-d
  global-average-pooled features of a ResNet-18 with the default ``linear`` head.
* A frozen backbone (transfer learning) keeps its BatchNorm layers in eval mode whatever ``train()`` says.

Models register a :class:`ModelSpec` in :data:`CLASSIFIERS`; :func:`build_classifier` assembles one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from cxraug.errors import CxraugError
from cxraug.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputAdapter(nn.Module):
    """[-1, 1] one-channel images -> the backbone's input (3-channel replication and normalisation if asked)."""

    def __init__(self, replicate: bool = False, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.replicate = replicate
        self.normalize = mean is not None
        if mean is not None and std is not None:
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.replicate:
            x = x.expand(-1, 3, -1, -1)
        if self.normalize:
            x = ((x + 1.0) * 0.5 - self.mean) / self.std
        return x


@dataclass
class Backbone:
    """What a model builder returns."""

    module: nn.Module  # (N, C_in, S, S) -> (N, C, h, w)
    adapter: InputAdapter
    last_block: tuple[str, ...] = ()  # submodule names of ``module`` unfrozen by ``unfreeze_last_epochs``


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, default head preset and smallest input size.

    ``build(in_channels, pretrained, state, **options) -> Backbone``; ``state`` is a torchvision-format ImageNet
    state dict to load (``None`` builds the pretrained architecture with random weights, for checkpoint loading).
    ``imagenet_arch(options)`` names the torchvision weights the model uses (``None``: no pretrained weights).
    """

    build: Callable[..., Backbone]
    default_head: str
    min_size: int
    imagenet_arch: Callable[[dict[str, Any]], str] | None = None
    options: dict[str, Any] = field(default_factory=dict)


CLASSIFIERS: Registry[ModelSpec] = Registry("classifier")


class Classifier(nn.Module):
    """Input adapter, backbone, head body (``neck``) and final Linear (``fc``)."""

    def __init__(self, backbone: Backbone, head: nn.Sequential) -> None:
        super().__init__()
        if not isinstance(head[-1], nn.Linear):
            raise ValueError("a head must end with nn.Linear")
        self.adapter = backbone.adapter
        self.backbone = backbone.module
        self.neck = head[:-1]
        self.fc = head[-1]
        self.last_block = backbone.last_block

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (the final Linear's input), shape (N, D)."""
        return self.neck(self.backbone(self.adapter(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.fc(self.features(x))

    @property
    def num_features(self) -> int:
        return int(self.fc.in_features)

    def freeze_backbone(self) -> None:
        """Transfer learning: only the head trains; frozen BatchNorm stays in eval mode."""
        self.backbone.requires_grad_(False)
        self.train(self.training)

    def unfreeze_last_block(self) -> None:
        """Fine-tuning phase: make the backbone's last block trainable."""
        if not self.last_block:
            raise CxraugError("this model has no last block to unfreeze")
        for name in self.last_block:
            self.backbone.get_submodule(name).requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        for m in self.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in m.parameters(recurse=False)
            ):
                m.eval()
        return self


def feature_shape(module: nn.Module, in_channels: int, size: int) -> tuple[int, int, int]:
    """Output shape (C, h, w) of ``module`` for one (in_channels, size, size) image (works on the meta device)."""
    param = next(module.parameters())
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(1, in_channels, size, size, device=param.device, dtype=param.dtype))
    module.train(was_training)
    return tuple(out.shape[1:])  # type: ignore[return-value]


def build_classifier(model: str, num_classes: int, size: int, head: str | None = None, pretrained: bool = False,
                     weights: str | None = None, in_channels: int = 1, load_weights: bool = True) -> Classifier:
    """Assemble a registered model with a head preset.

    ``pretrained`` (or a ``weights`` path) selects ImageNet transfer learning: the torchvision-format weights are
    loaded (``load_weights=False`` builds the same architecture without them, to load a cxraug checkpoint into)
    and the backbone is frozen. ``in_channels=3`` only serves to reproduce published parameter counts.
    """
    from cxraug.classifiers.heads import HEADS
    from cxraug.classifiers.pretrained import imagenet_state_dict

    spec = CLASSIFIERS.get(model)
    preset = HEADS.get(head or spec.default_head)
    if preset.models and model not in preset.models:
        raise CxraugError(f"head {head!r} is defined for {', '.join(preset.models)}, not {model}")
    if size < spec.min_size:
        raise CxraugError(f"{model} needs images of at least {spec.min_size} px, got {size}")
    pretrained = pretrained or weights is not None
    options = {**spec.options, **preset.backbone_options}
    state = None
    if pretrained:
        if spec.imagenet_arch is None:
            raise CxraugError(f"{model} has no ImageNet weights; pretrained models: "
                              + ", ".join(n for n in CLASSIFIERS if CLASSIFIERS.get(n).imagenet_arch))
        if load_weights:
            state = imagenet_state_dict(spec.imagenet_arch(options), weights)
    backbone = spec.build(in_channels=in_channels, pretrained=pretrained, state=state, **options)
    channels = 3 if backbone.adapter.replicate else in_channels
    head_module = preset.build(feature_shape(backbone.module, channels, size), num_classes)
    net = Classifier(backbone, head_module)
    if pretrained:
        net.freeze_backbone()
    return net
