"""How synthetic images enter classifier training: loss weight, label smoothing, pretrain-finetune."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_helpers import phantoms

import cxraug.classifiers.train as train_mod
from cxraug.classifiers import ClassifierConfig, train_classifier
from cxraug.classifiers.train import WeightedCE


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(12, 3, generator=g)
    y = torch.randint(0, 3, (12,), generator=g)
    syn = torch.zeros(12, dtype=torch.bool)
    syn[[1, 4, 5, 9]] = True
    return logits, y, syn


def test_weight_zero_is_the_loss_of_the_real_images_alone():
    logits, y, syn = batch()
    cw = torch.tensor([0.5, 1.0, 2.0])
    zero = WeightedCE(cw, 3, torch.device("cpu"), synthetic_weight=0.0, smoothing=0.3)
    plain = WeightedCE(cw, 3, torch.device("cpu"))
    with_syn = zero.sum(logits, y, syn) / zero.total(y, syn)
    real_only = plain.sum(logits[~syn], y[~syn]) / plain.total(y[~syn])
    assert torch.allclose(with_syn, real_only, atol=1e-6)
    full = plain.sum(logits, y) / plain.total(y)
    assert not torch.allclose(full, real_only, atol=1e-3)  # the synthetic rows do matter at weight 1


def test_weight_and_smoothing_follow_their_definitions():
    logits, y, syn = batch(1)
    loss = WeightedCE(None, 3, torch.device("cpu"), synthetic_weight=0.25, smoothing=0.3)
    logp = torch.log_softmax(logits, 1)
    target = torch.nn.functional.one_hot(y, 3).float()
    target[syn] = target[syn] * 0.7 + 0.1
    w = torch.where(syn, 0.25, 1.0)
    expected = (w * -(target * logp).sum(1)).sum()
    assert torch.allclose(loss.sum(logits, y, syn), expected, atol=1e-6)
    assert torch.isclose(loss.total(y, syn), w.sum())
    default = WeightedCE(None, 3, torch.device("cpu"))
    assert torch.equal(default.sum(logits, y, syn), default.sum(logits, y))  # defaults: today's loss, bit for bit


def marked(train):
    """``train`` plus 20 synthetic copies marked by a pixel value no real image has (255 at the corner)."""
    syn = train.subset(np.arange(20))
    syn.images = syn.images.copy()
    syn.images[:, 0, 0] = 255
    syn.synthetic = np.ones(len(syn), dtype=bool)
    real = train.subset(np.arange(len(train)))
    real.images = real.images.copy()
    real.images[:, 0, 0] = 0
    return real.concat(syn)


def test_pretrain_finetune_stage_two_sees_no_synthetic_image(monkeypatch):
    data = marked(phantoms(16, size=16, seed=0))
    val = phantoms(6, size=16, seed=3)
    seen: list[tuple[str, bool]] = []
    original = train_mod._train_epoch

    def spy(fabric, model, optimizer, loss_fn, d, batches, policy):
        batches = list(batches)
        idx = np.concatenate(batches)
        seen.append((len(d.labels), bool((d.images[idx][:, 0, 0] == 255).any())))
        return original(fabric, model, optimizer, loss_fn, d, iter(batches), policy)

    monkeypatch.setattr(train_mod, "_train_epoch", spy)
    cfg = ClassifierConfig(model="custom-cnn", batch_size=8, max_steps=12, eval_every=3, early_stopping=False,
                           synthetic_schedule="pretrain-finetune", finetune_fraction=0.5, precision="32")
    trained = train_classifier(data, val, cfg, device="cpu")
    phases = [h["phase"] for h in trained.history]
    assert phases == ["pretrain", "pretrain", "finetune-real", "finetune-real"]
    assert trained.steps == 12  # the whole budget, no more
    assert [s[1] for s in seen[:2]] == [True, True]  # stage 1 trains on the synthetic images too
    assert seen[2:] == [(32, False), (32, False)]  # stage 2: the 32 real images only


def test_mixed_training_is_unchanged_by_the_new_defaults():
    data = marked(phantoms(12, size=16, seed=0))
    val = phantoms(4, size=16, seed=3)
    base = dict(model="custom-cnn", batch_size=8, max_steps=6, eval_every=3, early_stopping=False, precision="32")
    a = train_classifier(data, val, ClassifierConfig(**base), device="cpu")
    b = train_classifier(data, val, ClassifierConfig(**base, synthetic_weight=1.0, synthetic_label_smoothing=0.0),
                         device="cpu")
    c = train_classifier(data, val, ClassifierConfig(**base, synthetic_weight=0.0), device="cpu")
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert [h["train_loss"] for h in a.history] != [h["train_loss"] for h in c.history]


@pytest.mark.parametrize("field,value", [("synthetic_weight", 1.5), ("synthetic_label_smoothing", 1.0),
                                         ("finetune_fraction", 0.0)])
def test_out_of_range_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ClassifierConfig(**{field: value})
