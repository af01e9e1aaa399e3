"""The generative-augmentation plug-in: counts per policy, marking, space rule, train fold only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxraug.augment.synthetic import SyntheticPolicy, SyntheticSource, augment_splits, augment_training_set
from cxraug.data.imageset import ImageSet, Splits
from cxraug.data.resize import resize_uint8
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Generator, GeneratorKind

CLASSES = ["COVID", "Normal", "Viral Pneumonia"]


def real_set(counts: dict[str, int], size: int = 32) -> ImageSet:
    labels = np.concatenate([np.full(n, CLASSES.index(c)) for c, n in counts.items()])
    imgs = np.random.default_rng(0).integers(0, 256, (len(labels), size, size), dtype=np.uint8)
    return ImageSet(imgs, labels, CLASSES, meta={"preprocess": {"size": size, "clahe": True}})


class _Label(Generator):
    """Conditional stand-in: image value = 40 * (label + 1), so the label can be read back from pixels."""

    name = "test-label"
    kind = GeneratorKind.CONDITIONAL
    checkpointed = ("dummy",)

    def build(self) -> None:
        self.dummy = torch.nn.Linear(1, 1)

    def train_step(self, batch: Batch) -> dict[str, float]:
        return {}

    def _generate(self, n, labels, source, rng):
        s = self.config.size
        return ((labels.float() + 1) * 40 / 127.5 - 1).view(n, 1, 1, 1).expand(n, 1, s, s)


class _Invert(Generator):
    """Translation stand-in: the output is the negated source."""

    name = "test-invert"
    kind = GeneratorKind.TRANSLATION
    checkpointed = ("dummy",)

    def build(self) -> None:
        self.dummy = torch.nn.Linear(1, 1)

    def train_step(self, batch: Batch) -> dict[str, float]:
        return {}

    def _generate(self, n, labels, source, rng):
        return -source


def _dcgan(cls: str, size: int = 16, preprocess: dict | None = None) -> Generator:
    return GENERATORS.get("dcgan")({"size": size, "g_channels": 4, "d_channels": 4, "latent_dim": 4},
                                   classes=[cls], preprocess=preprocess or {"size": size, "clahe": True})


@pytest.mark.parametrize("policy,expected", [
    (SyntheticPolicy(mode="add", n_per_class=7), {"COVID": 17, "Normal": 37, "Viral Pneumonia": 27}),
    (SyntheticPolicy(mode="balance"), {"COVID": 30, "Normal": 30, "Viral Pneumonia": 30}),
    (SyntheticPolicy(mode="ratio", ratio=0.5), {"COVID": 15, "Normal": 45, "Viral Pneumonia": 30}),
    (SyntheticPolicy(mode="add", n_per_class=5, classes=["covid"]), {"COVID": 15, "Normal": 30, "Viral Pneumonia": 20}),
])
def test_policies_per_class_counts_with_one_generator_per_class(policy, expected) -> None:
    train = real_set({"COVID": 10, "Normal": 30, "Viral Pneumonia": 20})
    gens = {c: _dcgan(c) for c in CLASSES}
    out = augment_training_set(train, gens, policy, seed=3)
    assert out.counts() == expected
    assert out.size == 32 and out.images.dtype == np.uint8
    assert not out.synthetic[:60].any() and out.synthetic[60:].all()
    np.testing.assert_array_equal(out.images[:60], train.images)
    assert all(p.startswith("synthetic:dcgan:") for p in out.paths[60:])
    assert len(set(out.patient_ids[60:])) == len(out) - 60  # every synthetic image is its own group
    again = augment_training_set(train, gens, policy, seed=3)
    np.testing.assert_array_equal(again.images, out.images)


def test_conditional_generator_labels_follow_policy() -> None:
    train = real_set({"COVID": 4, "Normal": 9, "Viral Pneumonia": 6}, size=16)
    gen = _Label({"size": 16}, classes=["covid", "normal", "viral_pneumonia"])
    out = augment_training_set(train, gen, SyntheticPolicy(mode="balance"))
    assert out.counts() == {"COVID": 9, "Normal": 9, "Viral Pneumonia": 9}
    syn = out.subset(out.synthetic)
    np.testing.assert_array_equal(syn.images[:, 0, 0], 40 * (syn.labels + 1))  # right class per image


def test_pix2pix_translates_training_source_images() -> None:
    train = real_set({"COVID": 3, "Normal": 5}, size=16)
    gen = GENERATORS.get("pix2pix")({"size": 16, "g_width": 4, "d_width": 4, "source": "Normal", "target": "COVID"},
                                    classes=CLASSES)
    out = augment_training_set(train, gen, SyntheticPolicy(mode="balance"))
    assert out.counts() == {"COVID": 5, "Normal": 5, "Viral Pneumonia": 0}
    assert out.synthetic.sum() == 2


def test_translation_generator_cycles_its_sources() -> None:
    train = real_set({"COVID": 3, "Normal": 5}, size=16)
    normal = train.of_class("Normal").images
    src = SyntheticSource(_Invert({"size": 16}), "covid", source=normal)
    out = augment_training_set(train, [src], SyntheticPolicy(mode="add", n_per_class=7))
    assert out.counts()["COVID"] == 10
    syn = out.subset(out.synthetic)
    expect = 255 - normal[np.arange(7) % 5].astype(int)
    assert np.abs(syn.images.astype(int) - expect).max() <= 1
    with pytest.raises(CxraugError, match="source"):
        augment_training_set(train, [SyntheticSource(_Invert({"size": 16}), "COVID")], SyntheticPolicy(mode="add", n_per_class=1))


def test_resize_rule_and_space_check() -> None:
    img = np.zeros((1, 16, 16), np.uint8)
    img[:, 4:12, 4:12] = 200
    up = resize_uint8(img, 32)
    assert up.shape == (1, 32, 32) and up.dtype == np.uint8
    assert up[0, 16, 16] == 200 and up[0, 0, 0] == 0
    assert np.array_equal(resize_uint8(img, 16), img)
    train = real_set({"COVID": 2, "Normal": 2})
    with pytest.raises(CxraugError, match="preprocessed differently"):
        augment_training_set(train, {"COVID": _dcgan("COVID", preprocess={"size": 16, "clahe": False})},
                             SyntheticPolicy(mode="add", n_per_class=1))


def test_only_training_fold_is_augmented() -> None:
    tr, va, te = (real_set({"COVID": n, "Normal": n}) for n in (5, 3, 2))
    out = augment_splits(Splits(tr, va, te), {"COVID": _dcgan("COVID")}, SyntheticPolicy(mode="ratio", ratio=2))
    assert out.train.counts() == {"COVID": 15, "Normal": 5, "Viral Pneumonia": 0}
    assert out.val is va and out.test is te and not out.val.synthetic.any() and not out.test.synthetic.any()


def test_policy_validation_and_uncovered_class() -> None:
    with pytest.raises(ValueError):
        SyntheticPolicy(mode="add")
    with pytest.raises(ValueError):
        SyntheticPolicy(mode="ratio")
    train = real_set({"COVID": 2, "Normal": 2})
    with pytest.raises(CxraugError, match="no generator covers"):
        augment_training_set(train, {"COVID": _dcgan("COVID")}, SyntheticPolicy(mode="add", n_per_class=1, classes=["Normal"]))
