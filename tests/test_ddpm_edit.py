"""DDPM SDEdit edits: the smallest strength keeps the source, strength 1 is free sampling bit for bit, larger
strengths move further from the source, seeded, mixed strengths in one batch, guidance, after a checkpoint load."""

import numpy as np
import pytest
import torch

from cxraug.data.imageset import ImageSet
from cxraug.data.phantom import draw_phantoms
from cxraug.errors import CxraugError
from cxraug.generators.base import Generator
from cxraug.generators.ddpm import DDPM

TINY = {"size": 16, "channels": [8, 16], "attention_levels": [False, True], "num_head_channels": 8,
        "norm_num_groups": 4, "batch_size": 16, "sample_steps": 6, "log_every": 1, "sample_every": 1000,
        "checkpoint_every": 1000, "ema_decay": 0.9}
CLASSES = ["COVID", "Normal"]


def phantoms(n: int, seed: int) -> ImageSet:
    images = np.concatenate([draw_phantoms(c, n, 16, seed=seed, severity=1.0)[0] for c in CLASSES])
    return ImageSet(images=images, labels=np.repeat([0, 1], n), classes=CLASSES)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    gen = DDPM({**TINY, "steps": 120, "lr": 2e-3}, classes=CLASSES)
    out = tmp_path_factory.mktemp("ddpm-edit")
    gen.fit(phantoms(24, seed=0), out, progress=False)
    gen.save(out / "g.pt")
    return gen, out / "g.pt"


@pytest.fixture(scope="module")
def sources():
    data = phantoms(10, seed=3)
    return data.images, data.labels


def test_smallest_strengths_keep_the_source(model, sources):
    gen, _ = model
    images, labels = sources
    exact = gen.edit(images, labels, strength=0.4 / gen.config.train_timesteps, seed=0)
    np.testing.assert_array_equal(exact, images)  # round(s * T) = 0: no forward step, nothing to undo
    one = gen.edit(images[:16], labels[:16], strength=1 / gen.config.train_timesteps, seed=0).astype(float)
    # the same forward step alone (the edit's noise draw: one chunk, the first draw of the seeded generator)
    noise = torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    x0 = torch.as_tensor(images[:16]).float().div(127.5).sub(1).unsqueeze(1)
    noised = gen.schedulers["train"].add_noise(x0, noise, torch.zeros(16, dtype=torch.long))
    noised = ((noised.clamp(-1, 1) + 1) * 127.5).round()[:, 0].numpy()
    edit_err, noise_err = np.abs(one - images[:16]).mean(), np.abs(noised - images[:16]).mean()
    # measured on this tiny model: about 3.6 grey levels after the edit, 3.9 for the forward step alone (noise std
    # 0.039 of the [-1, 1] range); a well-trained model removes more of it
    assert edit_err < noise_err and edit_err < 5, (edit_err, noise_err)


def test_strength_one_is_free_sampling_bit_for_bit(model, sources):
    gen, _ = model
    images, labels = sources  # 20 images: two chunks of batch 16, the seeded generator runs across both
    np.testing.assert_array_equal(gen.edit(images, labels, 1.0, seed=7), gen.sample(20, label=labels, seed=7))
    np.testing.assert_array_equal(gen.edit(images, labels, 1.0, steps=3, guidance=2.0, seed=7),
                                  _sample_with(gen, 20, labels, 7, sample_steps=3, guidance_scale=2.0))


def _sample_with(gen: DDPM, n: int, labels: np.ndarray, seed: int, **options) -> np.ndarray:
    before = gen.config.model_dump()
    for k, v in options.items():
        setattr(gen.config, k, v)
    try:
        return gen.sample(n, label=labels, seed=seed)
    finally:
        for k in options:
            setattr(gen.config, k, before[k])


def test_larger_strengths_move_further_from_the_source(model, sources):
    gen, _ = model
    images, labels = sources
    dist = [np.abs(gen.edit(images, labels, s, seed=1).astype(float) - images).mean() for s in (0.1, 0.3, 0.6, 1.0)]
    assert all(a < b for a, b in zip(dist, dist[1:])), dist


def test_edits_are_seeded_and_mixed_strengths_batch_like_single_ones(model, sources):
    gen, _ = model
    images, labels = sources
    a = gen.edit(images, labels, 0.5, seed=3)
    np.testing.assert_array_equal(a, gen.edit(images, labels, 0.5, seed=3))
    assert not np.array_equal(a, gen.edit(images, labels, 0.5, seed=4))
    # one chunk, the same noise draws; 0.003 starts at timestep 2: a 3-step chain beside 6-step ones
    mixed = gen.edit(images[:8], labels[:8], [0.003, 0.7] * 4, seed=5)
    low, high = gen.edit(images[:8], labels[:8], 0.003, seed=5), gen.edit(images[:8], labels[:8], 0.7, seed=5)
    assert np.abs(mixed[0::2].astype(int) - low[0::2]).max() <= 1
    assert np.abs(mixed[1::2].astype(int) - high[1::2]).max() <= 1


def test_guidance_zero_ignores_the_label_and_bad_arguments_fail(model, sources):
    gen, _ = model
    images, _ = sources
    np.testing.assert_array_equal(gen.edit(images, "COVID", 0.6, guidance=0.0, seed=2),
                                  gen.edit(images, "Normal", 0.6, guidance=0.0, seed=2))
    assert not np.array_equal(gen.edit(images, "COVID", 0.6, seed=2), gen.edit(images, "Normal", 0.6, seed=2))
    for bad in (0.0, 1.5):
        with pytest.raises(CxraugError, match="strength"):
            gen.edit(images, "COVID", bad)


def test_edit_after_loading_the_checkpoint_and_resizes_its_input(model, sources):
    gen, path = model
    images, labels = sources
    back = Generator.load(path)
    np.testing.assert_array_equal(back.edit(images, labels, 0.4, seed=8), gen.edit(images, labels, 0.4, seed=8))
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)  # 32 px in, the model's 16 px out
    out = back.edit(big, labels, 0.4, seed=8)
    assert out.shape == images.shape


@pytest.mark.slow
def test_edits_keep_the_label_on_32px_phantoms(tmp_path):
    """Evidence that SDEdit edits keep their class: a class-conditional DDPM trained briefly (1200 steps of 16,
    about 3 CPU-minutes) on 32 px phantoms of three classes; a judge CNN trained on the real training images must
    recognise s = 0.3 edits (guidance 3) of held-out images of each class at least as often as the held-out images
    themselves, minus 0.1. Measured: real 0.825 / 0.975 / 0.90 (Normal / COVID / Viral Pneumonia), edits 1.0 / 1.0 /
    0.95; edits towards the wrong class (labels shifted by one) 0.075 each. Without guidance (1.0) Viral Pneumonia
    edits fell to 0.675 (its texture washes out), and 600 steps or batch 8 left it at 0.775: guidance is what keeps
    the label at this training length."""
    from generator_eval import phantom_set, recognition, train_judge

    classes = ["Normal", "COVID", "Viral Pneumonia"]
    train = phantom_set(classes, 60, 32, seed=0)
    held = phantom_set(classes, 40, 32, seed=1)
    judge = train_judge(train, epochs=30)
    real = recognition(judge, held.images, held.labels)
    torch.manual_seed(0)
    gen = DDPM({"size": 32, "channels": [16, 32], "attention_levels": [False, False], "num_head_channels": 16,
                "norm_num_groups": 8, "batch_size": 16, "lr": 2e-3, "ema_decay": 0.99, "sample_steps": 10,
                "steps": 1200, "log_every": 50, "sample_every": 100000, "checkpoint_every": 600}, classes=classes)
    gen.fit(train, tmp_path, progress=False)
    edited = recognition(judge, gen.edit(held.images, held.labels, 0.3, guidance=3.0, seed=0), held.labels)
    print({"real": real, "edit_s0.3_guidance3": edited})
    for c, name in enumerate(classes):
        assert edited[c] >= real[c] - 0.1, (name, real, edited)
