"""The curation judge of a filter (free-sample and edit pools alike): the study's domain-encoder settings with the
filter's own passes, trained on the real images of the training subset only and cached by content hash."""

from __future__ import annotations

from typing import Any

import numpy as np

from cxraug.augment.synthetic import CurationFilter
from cxraug.data.imageset import ImageSet
from cxraug.metrics.curation import Judge
from cxraug.metrics.encoder import EncoderConfig
from cxraug.study.specs import GeneratorUnitSpec


def judge_config(spec: GeneratorUnitSpec, f: CurationFilter) -> EncoderConfig:
    """The judge of a filter: the study's domain-encoder settings, with the filter's own passes if it sets them."""
    return EncoderConfig(**{**spec.metrics.encoder, **({"epochs": f.judge_epochs} if f.judge_epochs else {})})


def real_part(train: ImageSet) -> ImageSet:
    """The real images of a training subset: what a judge and the realism test see."""
    return train.subset(np.flatnonzero(~train.synthetic))


def trained_judge(config: EncoderConfig, train: ImageSet, val: ImageSet,
                  cache_dir: str | None) -> tuple[Judge, dict[str, Any]]:
    """A judge trained on ``train``'s real images (or loaded by hash) and what the unit records about it."""
    judge = Judge.train(real_part(train), config, cache_dir)
    about = {"hash": judge.record["hash"], "trained_now": bool(judge.record.get("trained")),
             "epochs": judge.record["config"]["epochs"], "val_accuracy": judge.accuracy(val),
             "train_counts": judge.record["train_counts"]}
    return judge, about
