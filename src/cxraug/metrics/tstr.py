"""TSTR: train a classifier on synthetic images only, test it on real images.

Public API::

    tstr(fake: ImageSet, real_test: ImageSet, real_train: ImageSet | None = None, config=None) -> dict
        {"tstr": {accuracy, macro_f1, mcc, macro_auc, n_train, n_test}, "trtr": {...} (with real_train),
         "classifier": config, "test_images": "...", "classes": [...]}

Uses the classifier package (``cxraug.classifiers.train.train_classifier``, ``evaluate.metrics_from_predictions``).
``real_test`` must be real training or validation images, never the study's test split. With ``real_train`` the
same classifier is also trained on real images (TRTR), the reference a TSTR score is read against. Classes are
matched by name; only the classes the synthetic set has are used (real images of other classes are left out of
training and testing); a synthetic class absent from the real set is an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxraug.data.imageset import ImageSet
from cxraug.data.names import match_class
from cxraug.errors import CxraugError

KEYS = ("accuracy", "macro_f1", "mcc", "macro_auc")


def default_config(size: int) -> Any:
    """ResNet-18 from scratch, 10 epochs, class-weighted loss, no early stopping (no validation set)."""
    from cxraug.classifiers.train import ClassifierConfig

    return ClassifierConfig(model="resnet18" if size >= 32 else "custom-cnn", epochs=10, early_stopping=False,
                            class_weights=True, precision="32")


def align_classes(images: ImageSet, classes: list[str]) -> ImageSet:
    """``images`` relabelled onto ``classes`` (the names of the classes that occur, matched by name)."""
    mapping = np.full(len(images.classes), -1, dtype=np.int64)
    for c in np.unique(images.labels):
        mapping[c] = match_class(images.classes[c], classes)
    return ImageSet(images=images.images, labels=mapping[images.labels],
                    classes=list(classes), patient_ids=images.patient_ids, paths=images.paths,
                    synthetic=images.synthetic, meta=dict(images.meta))


def _only(images: ImageSet, names: list[str]) -> ImageSet:
    """The images of the classes ``names`` (matched by name)."""
    keep = [match_class(n, images.classes) for n in names]
    return images.subset(np.isin(images.labels, keep))


def _train_and_test(train: ImageSet, test: ImageSet, config: Any) -> dict[str, Any]:
    from cxraug.classifiers.evaluate import metrics_from_predictions
    from cxraug.classifiers.train import train_classifier

    model = train_classifier(train, train.subset(np.zeros(0, dtype=np.int64)), config, device="cpu")
    m = metrics_from_predictions(test.labels, model.predict_proba(test.images, device="cpu"), test.classes)
    return {**{k: m[k] for k in KEYS}, "n_train": len(train), "n_test": len(test),
            "train_counts": train.counts()}


def tstr(fake: ImageSet, real_test: ImageSet, real_train: ImageSet | None = None,
         config: Any | None = None) -> dict[str, Any]:
    """Train on synthetic (and optionally on real) images, test on ``real_test``; see the module docstring."""
    if real_test.meta.get("split_name") == "test":
        raise CxraugError("TSTR must test on real training or validation images, never the test split")
    present = [fake.classes[c] for c in np.unique(fake.labels)]
    real_test = align_classes(_only(real_test, present), present)
    fake = align_classes(fake, present)
    if fake.size != real_test.size:
        raise CxraugError(f"synthetic images are {fake.size} px, real images {real_test.size} px: resize first")
    if len(present) < 2:
        raise CxraugError("TSTR needs synthetic images of at least 2 classes")
    config = config or default_config(real_test.size)
    out: dict[str, Any] = {"classifier": config.model_dump(mode="json"), "classes": list(real_test.classes),
                           "test_images": f"{len(real_test)} real images "
                                          f"({real_test.meta.get('split_name', 'given set')})",
                           "tstr": _train_and_test(fake, real_test, config)}
    if real_train is not None:
        out["trtr"] = _train_and_test(align_classes(_only(real_train, present), present), real_test, config)
    return out
