"""ImageNet weights in torchvision's key format: from a local file (``--weights PATH``) or torchvision's weights
API (downloaded once into ``$TORCH_HOME/hub/checkpoints``). Offline without either, one
:class:`~cxraug.errors.MissingWeightsError` says which file to fetch and where to put it."""

from __future__ import annotations

import os
from typing import Iterable

import torch
from torch import nn
from torchvision.models import get_model_weights

from cxraug.errors import CxraugError, MissingWeightsError
from cxraug.io import torch_load


def imagenet_state_dict(arch: str, weights: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """The torchvision ImageNet state dict of ``arch`` (e.g. ``"resnet50"``, ``"vgg16_bn"``, ``"inception_v3"``)."""
    if weights is not None:
        state = torch_load(weights)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CxraugError(f"{weights} is not a state dict (a flat mapping of parameter names to tensors)")
        return state
    entry = get_model_weights(arch).DEFAULT
    try:
        return entry.get_state_dict(progress=False, check_hash=True)
    except OSError as exc:  # URLError is an OSError: offline, proxy, DNS
        cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        raise MissingWeightsError(
            f"ImageNet weights for {arch} are not available here and could not be downloaded ({exc}); fetch "
            f"{entry.url} on a connected machine and pass it with --weights PATH, or copy it into {cache}"
        ) from None


def load_torchvision_state(model: nn.Module, state: dict[str, torch.Tensor], arch: str,
                           drop_prefixes: Iterable[str] = ()) -> None:
    """Load a torchvision-format state dict strictly (keys under ``drop_prefixes`` ignored), naming mismatches."""
    drop = tuple(drop_prefixes)
    state = {k: v for k, v in state.items() if not (drop and k.startswith(drop))}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise CxraugError(
            f"the weights do not fit torchvision {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"shape mismatch {shapes[:3]}"
        )
    model.load_state_dict(state)
