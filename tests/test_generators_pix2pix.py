"""Pix2Pix: U-Net / PatchGAN shapes per size, pairing strategies, seeded sampling, save/load, exact resume, and
(slow) learning on paired phantoms."""

import numpy as np
import pytest
import torch
from generator_eval import coverage, phantom_set, train_judge

from cxraug.data.imageset import ImageSet
from cxraug.data.phantom import draw_paired, draw_phantoms
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Generator
from cxraug.generators.pix2pix import Pix2Pix, unet_depth
from cxraug.metrics.pixel import pixel_metrics

CLASSES = ["COVID", "Normal"]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("size,depth,patches", [(32, 5, 6), (64, 6, 6), (128, 7, 14), (224, 5, 26),
                                                (256, 8, 30)])
def test_shapes_and_parameters_per_size(size, depth, patches):
    assert unet_depth(size) == depth
    gen = Pix2Pix({"size": size}, classes=CLASSES)
    assert len(gen.G.down) == len(gen.G.up) == depth
    drops = [any(isinstance(m, torch.nn.Dropout) for m in blk) for blk in gen.G.up]
    assert drops == [True, True, True] + [False] * (depth - 3)  # dropout on the first three decoder blocks
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        y = gen.G.eval()(x)
        d = gen.D.eval()(x, y)
    assert y.shape == x.shape and float(y.abs().max()) <= 1.0
    assert d.shape == (2, 1, patches, patches)
    if size == 256:  # Isola's U-Net-256 and 70x70 PatchGAN (one image channel instead of three)
        assert 54.0e6 < n_params(gen.G) < 54.8e6
        assert 2.7e6 < n_params(gen.D) < 2.8e6


def test_bad_sizes_and_classes_are_clear_errors():
    with pytest.raises(CxraugError, match="multiple of 16"):
        Pix2Pix({"size": 40}, classes=CLASSES)
    with pytest.raises(CxraugError):
        Pix2Pix({"size": 32, "source": "COVID", "target": "covid"}, classes=CLASSES)
    with pytest.raises(CxraugError):
        Pix2Pix({"size": 32, "source": "Pneumonia"}, classes=CLASSES)
    assert GENERATORS.get("pix2pix") is Pix2Pix


TINY = {"size": 16, "g_width": 8, "d_width": 8, "batch_size": 4, "sample_every": 1000, "checkpoint_every": 1000,
        "log_every": 1}


def paired_set(n: int, size: int = 16, seed: int = 0, extra_covid: int = 0) -> ImageSet:
    """``n`` patients rendered as Normal and as COVID (patient ids shared), plus unpaired COVID patients."""
    pairs = draw_paired(["COVID", "Normal"], n, size, seed=seed, severity=1.0)
    covid, normal = pairs["COVID"][0], pairs["Normal"][0]
    extra = draw_phantoms("COVID", extra_covid, size, seed=seed + 1, severity=1.0)[0]
    images = np.concatenate([covid, extra, normal])
    labels = np.array([0] * (n + extra_covid) + [1] * n)
    pids = [f"p{i}" for i in range(n)] + [f"x{i}" for i in range(extra_covid)] + [f"p{i}" for i in range(n)]
    return ImageSet(images=images, labels=labels, classes=list(CLASSES), patient_ids=np.array(pids, dtype=object))


def test_given_pairs_follow_patient_ids_and_nearest_pairs_by_similarity():
    data = paired_set(6, extra_covid=3)
    given = Pix2Pix({**TINY, "pairing": "given"}, classes=CLASSES)
    src, paired, pool = given._pairs(data)
    assert len(src) == 6 and len(pool) == 9
    assert all(data.patient_ids[s] == data.patient_ids[t] for s, t in zip(src, paired))
    # nearest: targets that are slightly brightened copies of the sources find their own source
    images = np.concatenate([np.clip(data.images[9:].astype(int) + 10, 0, 255), data.images[9:]]).astype(np.uint8)
    shuffled = ImageSet(images=images[[5, 3, 0, 1, 4, 2, 6, 7, 8, 9, 10, 11]], labels=[0] * 6 + [1] * 6,
                        classes=list(CLASSES))
    near = Pix2Pix({**TINY, "pairing": "nearest"}, classes=CLASSES)
    src, paired, _ = near._pairs(shuffled)
    assert list(paired) == [2, 3, 5, 1, 4, 0]
    unpaired = ImageSet(images=data.images, labels=data.labels, classes=list(CLASSES))
    with pytest.raises(CxraugError, match="patient ids"):
        given._pairs(unpaired)


def test_batches_pair_source_with_target_and_random_pairs_change():
    data = paired_set(8)
    gen = Pix2Pix({**TINY, "pairing": "given", "flip": False, "rotate": 0}, classes=CLASSES)
    b = gen.next_batch(data)
    assert b.source.shape == b.x.shape == (4, 1, 16, 16) and (b.y == 0).all()
    # paired phantoms differ only inside the lungs: the pair is much closer than any other combination
    same = (b.source - b.x).abs().mean()
    other = (b.source - b.x.roll(1, 0)).abs().mean()
    assert same < other
    rnd = Pix2Pix({**TINY, "pairing": "random", "batch_size": 8}, classes=CLASSES)
    first, second = rnd.next_batch(data), rnd.next_batch(data)  # two epochs: new random targets
    assert not torch.equal(first.x, second.x)


def test_sampling_needs_sources_is_seeded_and_dropout_is_the_noise(tmp_path):
    data = paired_set(6)
    gen = Pix2Pix({**TINY, "steps": 2}, classes=CLASSES)
    gen.fit(data, tmp_path, progress=False)
    src = gen.source_images(data)
    assert len(src) == 6
    with pytest.raises(CxraugError, match="source"):
        gen.sample(3)
    a, b = gen.sample(6, source=src, seed=1), gen.sample(6, source=src, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, gen.sample(6, source=src, seed=2))
    gen.config.sample_dropout = False
    np.testing.assert_array_equal(gen.sample(6, source=src, seed=1), gen.sample(6, source=src, seed=2))
    imgs, labels = gen.eval_samples(10, data)
    assert imgs.shape == (10, 16, 16) and (labels == 0).all()


def test_source_images_are_real_source_class_training_images():
    data = paired_set(4)
    synth = ImageSet(images=data.images[:2], labels=[1, 1], classes=list(CLASSES), synthetic=[True, True])
    gen = Pix2Pix(TINY, classes=CLASSES)
    np.testing.assert_array_equal(gen.source_images(data.concat(synth)), data.images[data.labels == 1])


def test_save_load_sample_identical_and_exact_resume(tmp_path):
    data = paired_set(10)
    cfg = {**TINY, "steps": 4, "checkpoint_every": 2, "ema_decay": 0.9}
    full = Pix2Pix(cfg, classes=CLASSES)
    full.fit(data, tmp_path / "a", progress=False)
    Pix2Pix({**cfg, "steps": 2}, classes=CLASSES).fit(data, tmp_path / "b", progress=False)
    resumed = Pix2Pix(cfg, classes=CLASSES)
    resumed.fit(data, tmp_path / "b", progress=False)
    assert resumed.step == 4
    for name in ("G", "D"):
        ours, theirs = getattr(full, name).state_dict(), getattr(resumed, name).state_dict()
        for k in ours:
            assert torch.equal(ours[k], theirs[k]), (name, k)
    assert (tmp_path / "a" / "samples" / "step_0000004.png").exists()
    full.save(tmp_path / "g.pt")
    back = Generator.load(tmp_path / "g.pt")
    assert isinstance(back, Pix2Pix) and back.target_class == "COVID" and back.source_class == "Normal"
    src = full.source_images(data)
    np.testing.assert_array_equal(back.sample(5, source=src, seed=4), full.sample(5, source=src, seed=4))


@pytest.mark.slow
def test_paired_phantoms_translate_towards_covid_and_keep_the_patient(tmp_path):
    """Given pairs (one patient rendered Normal and COVID): outputs become COVID for a classifier trained on real
    phantoms, and resemble their own patient's COVID rendering more than another patient's."""
    n = 200
    data = paired_set(n, size=32)
    covid, normal = data.images[:n], data.images[n:]
    judge = train_judge(phantom_set(["COVID", "Normal"], 300, 32, seed=5))
    gen = Pix2Pix({"size": 32, "g_width": 16, "d_width": 16, "batch_size": 16, "steps": 300, "pairing": "given",
                   "sample_every": 1000, "checkpoint_every": 1000}, classes=CLASSES)
    gen.fit(data, tmp_path, progress=False)
    out = gen.sample(n, source=normal, seed=0)
    p_in, p_out = judge.probs(normal)[:, 0].mean(), judge.probs(out)[:, 0].mean()
    other = draw_phantoms("COVID", n, 32, seed=7, severity=1.0)[0]
    ssim_pair, ssim_other = pixel_metrics(out, covid)["ssim"], pixel_metrics(out, other)["ssim"]
    cov = coverage(judge, covid, out)
    print(f"P(COVID) {p_in:.3f} -> {p_out:.3f}; SSIM paired {ssim_pair:.3f} vs other {ssim_other:.3f}; "
          f"coverage {cov:.3f}")
    assert p_in < 0.2 and p_out > 0.8
    assert ssim_pair > ssim_other + 0.05
    assert cov > 0.45  # given pairs keep the patients' variety (real-vs-real coverage is about 0.9)
