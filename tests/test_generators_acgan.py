"""ACGAN (CovidGAN): architecture per output size, label-conditioned sampling, save/load and exact resume."""

import numpy as np
import pytest
import torch

from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.acgan import ACGAN, up_blocks_for
from cxraug.generators.base import Generator

CLASSES = ["COVID", "Normal", "Viral Pneumonia"]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("size,blocks,s0", [(28, 2, 7), (32, 3, 4), (56, 3, 7), (64, 4, 4), (112, 4, 7),
                                            (128, 5, 4), (224, 5, 7)])
def test_shapes_and_parameters_per_size(size, blocks, s0):
    assert up_blocks_for(size) == (blocks, s0)
    gen = ACGAN({"size": size}, classes=CLASSES)
    convs = [m for m in gen.G.up if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == blocks and all(m.kernel_size == (5, 5) and m.stride == (2, 2) for m in convs)
    # dense layers: label 50 -> s0*s0 map, latent 100 -> s0*s0*1024; then channels halve from 1024
    assert n_params(gen.G.latent) == 100 * s0 * s0 * 1024 + s0 * s0 * 1024
    assert n_params(gen.G.label) == 3 * 50 + 50 * s0 * s0 + s0 * s0
    assert [m.out_channels for m in convs] == [1024 // 2 ** (i + 1) for i in range(blocks - 1)] + [1]
    if s0 == 7 and blocks >= 3:  # the published 56/112/224 px family: "about 22 M parameters"
        assert 21.0e6 < n_params(gen.G) < 23.0e6
    z = torch.randn(2, 100)
    with torch.no_grad():
        x = gen.G.eval()(z, torch.tensor([0, 2]))
        adv, cls = gen.D.eval()(x)
        feats = gen.D.features(x)
    assert x.shape == (2, 1, size, size) and float(x.abs().max()) <= 1.0
    assert adv.shape == (2,) and cls.shape == (2, 3)
    assert feats.shape[1] == 64 * 2 ** min(blocks - 1, 3) * s0 * s0  # D ends on the s0 x s0 map


def test_paper_discriminator_is_about_two_million_parameters():
    gen = ACGAN({"size": 112}, classes=["COVID", "Normal"])
    convs = [m for m in gen.D.features if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 512]
    assert all(m.stride == (2, 2) and m.kernel_size == (3, 3) for m in convs)
    assert 1.5e6 < n_params(gen.D) < 2.2e6


@pytest.mark.parametrize("size", [17, 45])
def test_unreachable_size_is_a_clear_error(size):
    with pytest.raises(CxraugError, match="size"):
        ACGAN({"size": size}, classes=CLASSES)


def test_registry_and_config_are_strict():
    assert GENERATORS.get("acgan") is ACGAN
    with pytest.raises(Exception, match="extra"):
        ACGAN({"size": 32, "bogus": 1}, classes=CLASSES)


def _two_tone(n: int, size: int = 16, seed: int = 0) -> ImageSet:
    """Class 0 = dark images, class 1 = bright images, with a little texture."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    base = np.where(labels[:, None, None] == 0, 50, 200)
    images = np.clip(base + rng.normal(0, 15, (n, size, size)), 0, 255).astype(np.uint8)
    return ImageSet(images=images, labels=labels, classes=["dark", "bright"])


TINY = {"size": 16, "g_width": 32, "d_width": 8, "batch_size": 16, "log_every": 5, "sample_every": 1000,
        "checkpoint_every": 1000}


def test_samples_carry_the_requested_labels(tmp_path):
    data = _two_tone(128)
    gen = ACGAN({**TINY, "steps": 150, "lr": 1e-3}, classes=data.classes)
    gen.fit(data, tmp_path, progress=False)
    dark = gen.sample(32, label="dark", seed=1).astype(float).mean()
    bright = gen.sample(32, label=1, seed=1).astype(float).mean()
    assert dark < 110 < bright, (dark, bright)
    mixed = gen.sample(4, label=[0, 1, 0, 1], seed=2).reshape(4, -1).mean(1)
    assert mixed[0] < mixed[1] and mixed[2] < mixed[3]
    with pytest.raises(CxraugError):
        gen.sample(2, label=5)


def test_save_load_sample_identical_and_exact_resume(tmp_path):
    data = _two_tone(48)
    cfg = {**TINY, "steps": 4, "checkpoint_every": 2, "ema_decay": 0.9}
    straight = ACGAN(cfg, classes=data.classes)
    straight.fit(data, tmp_path / "a", progress=False)

    first = ACGAN({**cfg, "steps": 2}, classes=data.classes)
    first.fit(data, tmp_path / "b", progress=False)
    resumed = ACGAN(cfg, classes=data.classes)
    resumed.fit(data, tmp_path / "b", progress=False)
    assert resumed.step == 4
    for k, v in straight.G.state_dict().items():
        assert torch.equal(v, resumed.G.state_dict()[k]), k
    for k, v in straight.D.state_dict().items():
        assert torch.equal(v, resumed.D.state_dict()[k]), k

    straight.save(tmp_path / "g.pt")
    loaded = Generator.load(tmp_path / "g.pt")
    assert isinstance(loaded, ACGAN) and loaded.classes == data.classes
    np.testing.assert_array_equal(loaded.sample(6, label="bright", seed=3), straight.sample(6, label="bright", seed=3))
    assert not np.array_equal(straight.sample(6, label="bright", seed=3), straight.sample(6, label="dark", seed=3))


@pytest.mark.slow
def test_phantom_classes_are_learnt_in_the_best_checkpoint(tmp_path):
    """6000 steps (about 7 CPU-minutes) on 32 px phantoms of the study's three classes, 300 per class. The
    checkpoint with the best class-wise KID (in the features of a judge CNN trained on the real phantoms) must
    yield samples the judge assigns to the requested class well above chance (1/3), with a PRDC coverage of at
    least half the real-vs-real coverage on average over the classes and a third of it in every class.
    Measured: best step 3000 under pytest (6000 in a plain script; from step 3000 on the checkpoint judge-KID
    sits on a plateau, 0.14-0.20 with these 150 samples and 0.22-0.27 with 300 or 450, whose minimum moves with
    the run and the sample count), recognition 0.99 / 0.95 / 0.65,
    coverage 0.71 / 0.697 / 0.383 against real-vs-real 0.887 / 0.913 / 0.827. Viral Pneumonia's coverage at the
    checkpoints from 3000 to 9000 steps is 0.30-0.46, so a per-class half would fail on which checkpoint a
    near-tie picks; a collapsed generator (the paper's dropout 0.5 below) stays <= 0.06 and fails either bound.

    Two settings differ from the paper's defaults, both needed here (BENCHMARKS.md): discriminator dropout 0
    instead of 0.5 (with 0.5 the discriminator barely separates real from fake, adversarial loss ~1.2-1.35
    against 1.39 for guessing, and the samples of a class stay near-identical grainy copies: coverage <= 0.06 at
    every checkpoint to 2400 steps; <= 0.11 with batch 64, <= 0.03 with a minibatch-std channel) and an EMA of
    the generator (0.99): without it, coverage oscillates between checkpoints and the best-KID one had Viral
    Pneumonia at 0.32."""
    from generator_eval import class_coverage, phantom_set, recognition, train_judge

    from cxraug.metrics.kid import kid

    train = phantom_set(CLASSES, 300, 32, seed=0)
    held = phantom_set(CLASSES, 150, 32, seed=1)
    judge = train_judge(train)
    real = {c: judge.features(train.images[train.labels == c]) for c in range(3)}

    def scorer(images, labels):
        feats = judge.features(images)
        return {"kid": float(np.mean([kid(real[c], feats[labels == c], n_subsets=10, n_boot=0)["kid"]
                                      for c in range(3)]))}

    gen = ACGAN({"size": 32, "g_width": 128, "d_width": 32, "dropout": 0.0, "ema_decay": 0.99, "batch_size": 32,
                 "steps": 6000, "kid_samples": 150, "checkpoint_every": 750, "sample_every": 3000}, classes=CLASSES)
    res = gen.fit(train, tmp_path, scorer=scorer, progress=False)
    best = Generator.load(tmp_path)
    assert best.step == res.best_step
    labels = np.repeat(np.arange(3), 150)
    fake = best.sample(len(labels), label=labels, seed=0)
    rec = recognition(judge, fake, labels)
    cov, cov_real = class_coverage(judge, train, fake, labels), class_coverage(judge, train, held.images, held.labels)
    report = f"best step {res.best_step}: recognition {rec}, coverage {np.round(cov, 3)} " \
             f"(real-vs-real {np.round(cov_real, 3)})"
    print(report)
    assert all(r > 0.6 for r in rec.values()), report
    assert np.mean(cov) >= 0.5 * np.mean(cov_real), report
    assert all(f >= r / 3 for f, r in zip(cov, cov_real)), report
