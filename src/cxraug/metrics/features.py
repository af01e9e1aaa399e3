"""Feature extractors for image metrics: one interface, three implementations, registry ``EXTRACTORS``.

Public API::

    get_extractor(name="domain", *, dims=None, weights=None, train=None, cache_dir=None,
                  encoder=None, device="cpu") -> FeatureExtractor
    extractor(images uint8 (N,S,S)) -> float64 (N, extractor.dims)
    extractor.describe() -> {"extractor", "dims", "input", "resize", "weights"/"hash", ...}

* ``domain`` (the default everywhere): the 512-d penultimate layer of a ResNet-18 trained on the real training
  split (:mod:`cxraug.metrics.encoder`); pass ``train`` (trained, or reused by hash from ``cache_dir``) or
  ``weights`` (a saved ``domain-<hash>.pt``). Works offline.

Every extractor resizes with :func:`cxraug.data.resize.resize_uint8`'s rule (bilinear, antialiased), stated in ``describe()``.
* ``inception``: the FID Inception-v3 of torch-fidelity/torchmetrics, 2048-d pool or 768-d pre-aux features
  (``dims``), input replicated to 3 channels at 0..255 and resized to 299 px inside torchmetrics (bilinear,
  antialiased). Weights: ``weights`` path, else ``$CXRAUG_INCEPTION_WEIGHTS``, else the torch hub cache;
  never downloaded at run time (MissingWeightsError says what to do).
* ``xrv``: torchxrayvision DenseNet-121 (1024-d), input one channel scaled to [-1024, 1024], 224 px.
  Weights: ``weights`` path to a state dict in torchxrayvision's key format, else
  ``$CXRAUG_XRV_WEIGHTS``, else the official file in torchxrayvision's cache directory.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxraug import io
from cxraug.data.imageset import ImageSet
from cxraug.data.resize import bilinear
from cxraug.errors import CxraugError, MissingWeightsError
from cxraug.metrics import encoder as enc
from cxraug.registry import Registry

DEFAULT_EXTRACTOR = "domain"

EXTRACTORS: Registry[Callable[..., "FeatureExtractor"]] = Registry("feature extractor")


class FeatureExtractor(ABC):
    """Maps uint8 images (N, S, S) to float64 features (N, dims); ``describe()`` names everything used."""

    name: ClassVar[str]

    def __init__(self, model: nn.Module, dims: int, input_size: int, device: str | torch.device,
                 info: dict[str, Any], batch_size: int = 64) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.dims = dims
        self.input_size = input_size
        self.info = info
        self.batch_size = batch_size

    @abstractmethod
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1, S, S) on the device -> the network's input."""

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> features (B, dims)."""

    @abstractmethod
    def resize_rule(self) -> str:
        """How an S x S image reaches the network (stated in every output)."""

    def describe(self) -> dict[str, Any]:
        return {"extractor": self.name, "dims": self.dims, "input_size": self.input_size,
                "resize": self.resize_rule(), **self.info}

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"expected uint8 images (N, S, S), got {images.dtype} {images.shape}")
        out = []
        for i in range(0, len(images), self.batch_size):
            x = torch.as_tensor(images[i:i + self.batch_size]).unsqueeze(1).to(self.device)
            out.append(self._forward(self._prepare(x)).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dims))


class DomainExtractor(FeatureExtractor):
    name = "domain"

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return bilinear(x, self.input_size) / 127.5 - 1.0

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)

    def resize_rule(self) -> str:
        return f"bilinear (antialiased) to {self.input_size} px, scaled to [-1, 1]"


class InceptionExtractor(FeatureExtractor):
    name = "inception"

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1).contiguous()  # uint8; torchmetrics resizes inside

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def resize_rule(self) -> str:
        return "grey replicated to RGB (0..255), bilinear (antialiased) to 299 px inside torchmetrics"


class XrvExtractor(FeatureExtractor):
    name = "xrv"

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return bilinear(x, self.input_size) / 255.0 * 2048.0 - 1024.0

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.features(x)
        return F.adaptive_avg_pool2d(F.relu(feats), 1).flatten(1)  # = torchxrayvision's features2

    def resize_rule(self) -> str:
        return f"bilinear (antialiased) to {self.input_size} px, scaled to [-1024, 1024]"


def _reject(name: str, **options: Any) -> None:
    bad = [k for k, v in options.items() if v is not None]
    if bad:
        raise CxraugError(f"feature extractor {name!r} does not take {', '.join(bad)}")


@EXTRACTORS.register("domain")
def _build_domain(*, dims: int | None = None, weights: str | None = None, train: ImageSet | None = None,
                  cache_dir: str | None = None, encoder: enc.EncoderConfig | None = None,
                  device: str = "cpu") -> FeatureExtractor:
    if dims not in (None, 512):
        raise CxraugError(f"the domain encoder has 512 feature dimensions, not {dims}")
    if weights is not None:
        trained, record = enc.load_encoder_file(weights)
    elif train is not None:
        trained, record = enc.load_or_train_encoder(train, encoder, cache_dir)
    else:
        raise CxraugError("the domain feature extractor needs the real training split it is trained on "
                          "(train=ImageSet) or a saved encoder file (weights=domain-<hash>.pt)")
    info = {"hash": record["hash"], "weights": record.get("path"), "encoder_classes": record["classes"],
            "encoder_trained_now": bool(record.get("trained", False))}
    return DomainExtractor(trained.model, trained.model.num_features, int(record["config"]["size"]), device, info)


def inception_weights_file(weights: str | None) -> Path:
    """The local FID Inception weights: ``weights`` (file or directory), ``$CXRAUG_INCEPTION_WEIGHTS``, or the
    torch hub cache where torch-fidelity would have saved them. Never downloads."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    filename = URL_INCEPTION_V3.rsplit("/", 1)[-1]
    hub = Path(torch.hub.get_dir()) / "checkpoints" / filename
    candidates = [Path(p) for p in (weights, os.environ.get("CXRAUG_INCEPTION_WEIGHTS")) if p] + [hub]
    for c in candidates:
        path = c / filename if c.is_dir() else c
        if path.is_file():
            return path
    raise MissingWeightsError(
        f"FID Inception weights not found (looked at {', '.join(str(c) for c in candidates)}); cxraug does not "
        f"download at run time. On a machine with internet, fetch {URL_INCEPTION_V3} and pass the file with "
        "--weights PATH, set CXRAUG_INCEPTION_WEIGHTS, or place it in the torch hub cache above; or use "
        "--features domain (works offline)")


@EXTRACTORS.register("inception")
def _build_inception(*, dims: int | None = None, weights: str | None = None, train: ImageSet | None = None,
                     cache_dir: str | None = None, encoder: enc.EncoderConfig | None = None,
                     device: str = "cpu") -> FeatureExtractor:
    _reject("inception", train=train, encoder=encoder)
    dims = dims or 2048
    if dims not in (2048, 768):
        raise CxraugError(f"inception features are 2048-d (pool) or 768-d (pre-aux), not {dims}")
    path = inception_weights_file(weights or cache_dir)
    io.torch_load(path)  # refuse pickled files before torch-fidelity loads it without weights_only
    from torchmetrics.image.fid import NoTrainInceptionV3

    model = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(dims)],
                               feature_extractor_weights_path=str(path))
    return InceptionExtractor(model, dims, 299, device, {"weights": str(path)})


def _xrv_module():
    try:
        import torchxrayvision
    except ImportError:
        raise MissingWeightsError("the xrv feature extractor needs torchxrayvision: pip install 'cxraug[xrv]' "
                                  "(and its DenseNet-121 weights), or use --features domain") from None
    return torchxrayvision


XRV_WEIGHTS = "densenet121-res224-all"


@EXTRACTORS.register("xrv")
def _build_xrv(*, dims: int | None = None, weights: str | None = None, train: ImageSet | None = None,
               cache_dir: str | None = None, encoder: enc.EncoderConfig | None = None,
               device: str = "cpu") -> FeatureExtractor:
    _reject("xrv", train=train, encoder=encoder)
    if dims not in (None, 1024):
        raise CxraugError(f"xrv DenseNet-121 features are 1024-d, not {dims}")
    xrv = _xrv_module()
    weights = weights or os.environ.get("CXRAUG_XRV_WEIGHTS")
    if weights:
        model = xrv.models.DenseNet(weights=None)
        state = io.torch_load(weights)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            raise CxraugError(f"{weights} is not a torchxrayvision DenseNet-121 state dict: "
                              f"{str(exc).splitlines()[0]}") from None
        source = str(weights)
    else:
        url = xrv.models.model_urls[XRV_WEIGHTS]["weights_url"]
        folder = Path(cache_dir or xrv.utils.get_cache_dir()).expanduser()
        official = folder / url.rsplit("/", 1)[-1]
        if not official.is_file():
            raise MissingWeightsError(
                f"torchxrayvision weights {XRV_WEIGHTS} not found at {official}; cxraug does not download at run "
                f"time. Fetch {url} into {folder}, or pass a state dict with --weights PATH / CXRAUG_XRV_WEIGHTS, "
                "or use --features domain")
        model = xrv.models.DenseNet(weights=XRV_WEIGHTS, cache_dir=str(folder))  # the official (pickled) file
        source = str(official)
    return XrvExtractor(model, 1024, 224, device, {"weights": source})


def get_extractor(name: str = DEFAULT_EXTRACTOR, *, dims: int | None = None, weights: str | None = None,
                  train: ImageSet | None = None, cache_dir: str | None = None,
                  encoder: enc.EncoderConfig | None = None, device: str = "cpu") -> FeatureExtractor:
    """Build the named extractor (see the module docstring for what each option means)."""
    return EXTRACTORS.get(name)(dims=dims, weights=weights, train=train, cache_dir=cache_dir, encoder=encoder,
                                device=device)
