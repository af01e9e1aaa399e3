"""The domain encoder: a cxraug ResNet-18 classifier (``cxraug.classifiers``) trained on the real training split,
used for its 512-d penultimate features (the default feature extractor of every cxraug image metric).

Public API::

    EncoderConfig(size=64, epochs=8, batch_size=64, lr=1e-3, augment="fedoruk", seed=0)
    encoder_hash(train: ImageSet, config) -> str        # config + data fingerprint + format version
    load_or_train_encoder(train, config, cache_dir) -> (TrainedClassifier, record)   # reused when the hash matches
    load_encoder_file(path) -> (TrainedClassifier, record)

The encoder is trained with the classifier package's ``train_classifier`` (no validation set: a fixed number of
epochs, class-weighted loss) on the training images resized to ``size``. It is saved as
``<cache_dir>/domain-<hash>.pt`` (a weights-only classifier checkpoint) with ``domain-<hash>.json`` beside it;
every metric computed with it names the hash, so two FIDs are comparable exactly when their hashes agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from cxraug import io
from cxraug.data.imageset import ImageSet, data_fingerprint
from cxraug.data.resize import resize_uint8
from cxraug.errors import CorruptFileError, CxraugError
from cxraug.ui import console

FORMAT = "cxraug-domain-encoder/2"


class EncoderConfig(BaseModel):
    """How the domain encoder is trained (every field enters its hash)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("resnet18", description="a cxraug classifier trained from scratch")
    size: int = Field(64, ge=32, le=512, description="images are resized to size x size (bilinear, antialiased)")
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    augment: str | None = Field("fedoruk", description="classical policy during encoder training")
    seed: int = 0


def default_cache_dir() -> Path:
    """``$CXRAUG_CACHE/encoders`` (default ``~/.cache/cxraug/encoders``)."""
    root = os.environ.get("CXRAUG_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cxraug")
    return Path(root) / "encoders"


def encoder_hash(train: ImageSet, config: EncoderConfig) -> str:
    """16-hex-digit version hash of (format, config, torch major.minor, training data)."""
    payload = json.dumps({"format": FORMAT, "config": config.model_dump(), "data": data_fingerprint(train),
                          "torch": ".".join(torch.__version__.split(".")[:2])}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def encoder_path(digest: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the encoder of hash ``digest`` (:func:`encoder_hash`) is cached: ``<cache_dir>/domain-<hash>.pt``."""
    return Path(cache_dir or default_cache_dir()) / f"domain-{digest}.pt"


def load_encoder_file(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Load a saved domain encoder (``domain-<hash>.pt`` with its ``.json``) -> (TrainedClassifier, record)."""
    from cxraug.classifiers.train import TrainedClassifier

    path = Path(path)
    meta = path.with_suffix(".json")
    if not meta.is_file():
        raise CxraugError(f"{path} has no {meta.name} beside it: not a cxraug domain encoder")
    record = json.loads(meta.read_text())
    if record.get("format") != FORMAT:
        raise CxraugError(f"{meta} is not a cxraug domain encoder record (expected format {FORMAT})")
    return TrainedClassifier.load(path), {**record, "path": str(path)}


def train_encoder(train: ImageSet, config: EncoderConfig) -> Any:
    """Train the encoder network with the classifier package (returns a TrainedClassifier)."""
    from cxraug.classifiers.train import ClassifierConfig, train_classifier

    if len(np.unique(train.labels)) < 2:
        raise CxraugError(f"the domain encoder is a classifier and needs at least 2 classes in its training "
                          f"split, got {train.counts()}")
    data = ImageSet(images=resize_uint8(train.images, config.size), labels=train.labels, classes=train.classes)
    cfg = ClassifierConfig(model=config.model, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                           weight_decay=config.weight_decay, optimizer="adamw", early_stopping=False,
                           class_weights=True, augment=config.augment, seed=config.seed, precision="32")
    model = train_classifier(data, data.subset(np.zeros(0, dtype=np.int64)), cfg, device="cpu")
    if model.failure is not None:
        raise CxraugError(f"domain encoder training failed: {model.failure} (metrics.encoder.lr)")
    return model


def load_or_train_encoder(train: ImageSet, config: EncoderConfig | None = None,
                          cache_dir: str | os.PathLike[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """The domain encoder for ``train``: loaded from ``cache_dir`` when its hash matches, otherwise trained and
    saved there. ``record["trained"]`` says which happened."""
    config = config or EncoderConfig()
    digest = encoder_hash(train, config)
    path = encoder_path(digest, cache_dir)
    if path.exists() and path.with_suffix(".json").exists():
        try:
            model, record = load_encoder_file(path)
            return model, {**record, "trained": False}
        except CorruptFileError as exc:
            console.print(f"[yellow]warning[/]: cached domain encoder {exc}; training it again")
    t0 = time.time()
    model = train_encoder(train, config)
    record = {"format": FORMAT, "hash": digest, "config": config.model_dump(), "classes": list(train.classes),
              "train_counts": train.counts(), "train_accuracy": model.history[-1]["train_acc"],
              "train_seconds": round(time.time() - t0, 1)}
    model.save(path)
    io.write_json(path.with_suffix(".json"), record)
    return model, {**record, "path": str(path), "trained": True}
