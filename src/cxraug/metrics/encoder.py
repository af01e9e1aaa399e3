"""The domain encoder: a ResNet-18 classifier trained on the real training split, used for its 512-d
penultimate features (the default feature extractor of every cxraug image metric).

Public API::

    EncoderConfig(size=64, epochs=8, batch_size=64, lr=1e-3, seed=0)
    train_classifier(images uint8 (N,S,S), labels, n_classes, config) -> nn.Module   # also used by TSTR
    encoder_hash(train: ImageSet, config) -> str        # config + data fingerprint + format version
    load_or_train_encoder(train, config, cache_dir) -> (model, record)   # reused when the hash matches

The saved file ``<cache_dir>/domain-<hash>.pt`` is a weights-only checkpoint; every metric computed with it
names the hash, so two FIDs are comparable exactly when their hashes agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from cxraug import io
from cxraug.data.imageset import ImageSet, to_unit
from cxraug.errors import CxraugError

FORMAT = "cxraug-domain-encoder/1"


class EncoderConfig(BaseModel):
    """How the domain encoder is trained (every field enters its hash)."""

    model_config = ConfigDict(extra="forbid")

    arch: str = Field("resnet18", description="torchvision ResNet-18, one-channel stem, trained from scratch")
    size: int = Field(64, ge=16, le=512, description="images are resized to size x size (bilinear, antialiased)")
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    shift: int = Field(4, ge=0, description="random translation augmentation, pixels at `size`")
    seed: int = 0


def default_cache_dir() -> Path:
    """``$CXRAUG_CACHE/encoders`` (default ``~/.cache/cxraug/encoders``)."""
    root = os.environ.get("CXRAUG_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cxraug")
    return Path(root) / "encoders"


def resnet18(n_classes: int) -> nn.Module:
    """torchvision ResNet-18 with a one-channel stem and ``n_classes`` outputs."""
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=n_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def penultimate(model: nn.Module) -> nn.Module:
    """The network up to its global pooling (the classification layer replaced by identity)."""
    model.fc = nn.Identity()
    return model.eval().requires_grad_(False)


def resize_unit(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N,S,S) -> float (N,1,size,size) in [-1, 1]; bilinear with antialiasing when the size changes."""
    x = to_unit(images)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def train_classifier(images: np.ndarray, labels: np.ndarray, n_classes: int, config: EncoderConfig,
                     progress: str | None = None) -> nn.Module:
    """Train a ResNet-18 on uint8 images with class-balanced cross-entropy; returns the model in eval mode."""
    from cxraug.ui import track

    labels = np.asarray(labels, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise CxraugError(f"training a classifier needs at least 2 classes, got {np.unique(labels).tolist()}")
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = resnet18(n_classes)
    x = resize_unit(images, config.size)
    y = torch.as_tensor(labels)
    counts = torch.bincount(y, minlength=n_classes).double()
    weight = (counts.sum() / (n_classes * counts.clamp_min(1))).float()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(x) / config.batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    model.train()
    for _ in track(range(config.epochs), progress or "training classifier"):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            xb = _shift(x[idx], config.shift, gen)
            loss = F.cross_entropy(model(xb), y[idx], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def _shift(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (reflect padding, one offset per batch)."""
    if pad == 0:
        return x
    s = x.shape[-1]
    dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
    return F.pad(x, (pad, pad, pad, pad), mode="reflect")[..., dy:dy + s, dx:dx + s]


def data_fingerprint(train: ImageSet) -> str:
    """SHA-256 of the images, labels and class names (order-sensitive)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(train.images).tobytes())
    h.update(np.ascontiguousarray(train.labels).tobytes())
    h.update(json.dumps(list(train.classes)).encode())
    h.update(str(train.images.shape).encode())
    return h.hexdigest()


def encoder_hash(train: ImageSet, config: EncoderConfig) -> str:
    """16-hex-digit version hash of (format, config, torch major.minor, training data)."""
    payload = json.dumps({"format": FORMAT, "config": config.model_dump(), "data": data_fingerprint(train),
                          "torch": ".".join(torch.__version__.split(".")[:2])}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_encoder_file(path: str | os.PathLike[str]) -> tuple[nn.Module, dict]:
    """Load a saved domain encoder; returns (penultimate-layer model, record without the weights)."""
    state = io.torch_load(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CxraugError(f"{path} is not a cxraug domain encoder (expected format {FORMAT})")
    model = resnet18(len(state["classes"]))
    model.load_state_dict(state["state_dict"])
    record = {k: v for k, v in state.items() if k != "state_dict"}
    record["path"] = str(path)
    return penultimate(model), record


def load_or_train_encoder(train: ImageSet, config: EncoderConfig | None = None,
                          cache_dir: str | os.PathLike[str] | None = None) -> tuple[nn.Module, dict]:
    """The domain encoder for ``train``: loaded from ``cache_dir`` when its hash matches, otherwise trained and
    saved there. ``record["trained"]`` says which happened."""
    config = config or EncoderConfig()
    digest = encoder_hash(train, config)
    path = Path(cache_dir or default_cache_dir()) / f"domain-{digest}.pt"
    if path.exists():
        model, record = load_encoder_file(path)
        return model, {**record, "trained": False}
    t0 = time.time()
    model = train_classifier(train.images, train.labels, len(train.classes), config,
                             progress=f"training domain encoder {digest}")
    with torch.no_grad():
        acc = float((model(resize_unit(train.images, config.size)).argmax(1).numpy() == train.labels).mean())
    record = {"format": FORMAT, "hash": digest, "config": config.model_dump(), "classes": list(train.classes),
              "train_counts": train.counts(), "train_accuracy": acc, "train_seconds": time.time() - t0}
    io.torch_save({**record, "state_dict": model.state_dict()}, path)
    return penultimate(model), {**record, "path": str(path), "trained": True}
