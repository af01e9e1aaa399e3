"""Curation of synthetic images (cxraug.metrics.curation): confidence, realism, diversity, draw-until-kept."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_helpers import phantoms

from cxraug.augment.synthetic import CurationFilter
from cxraug.metrics.curation import Judge, curate_class, curate_images, realism_pass, select_diverse
from cxraug.metrics.encoder import EncoderConfig
from cxraug.metrics.prdc import prdc


class PlantedJudge:
    """Probabilities and features read off the images themselves: class-1 probability = mean pixel / 255,
    features = the mean pixel (1-d)."""

    def proba(self, images: np.ndarray) -> np.ndarray:
        p = np.asarray(images, dtype=np.float64).reshape(len(images), -1).mean(1) / 255.0
        return np.stack([1 - p, p], axis=1)

    def features(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(images, dtype=np.float64).reshape(len(images), -1).mean(1, keepdims=True)


def flat(values) -> np.ndarray:
    return np.stack([np.full((4, 4), v, np.uint8) for v in values])


def test_confidence_keeps_exactly_the_images_at_or_above_tau():
    values = np.concatenate([np.arange(0, 256, 5), [153]])  # 153 / 255 == 0.6 exactly: kept
    images, labels = flat(values), np.ones(len(values), dtype=np.int64)
    keep, rec, detail = curate_images(images, labels, ["Normal", "COVID"], CurationFilter(confidence=0.6),
                              PlantedJudge(), _real(flat([100, 150])))
    expected = values / 255.0 >= 0.6
    assert np.array_equal(keep, expected)
    assert rec["COVID"]["kept"] == expected.sum() and rec["COVID"]["rejected_confidence"] == (~expected).sum()
    assert np.allclose(detail["probability"], values / 255.0) and np.array_equal(detail["pass_confidence"], expected)


def _real(images: np.ndarray, label: int = 1):
    from cxraug.data.imageset import ImageSet

    return ImageSet(images=images, labels=np.full(len(images), label), classes=["Normal", "COVID"])


def test_draw_until_kept_stops_at_max_draw_and_says_it_is_short():
    calls = []

    def draw(rnd: int, n: int) -> np.ndarray:  # a generator whose images the judge rejects 3 times in 4
        calls.append(n)
        return flat([250 if k % 4 == 0 else 10 for k in range(n)])

    f = CurationFilter(confidence=0.9, max_draw=3)
    images, (res,) = curate_class(draw, need=20, label=1, filters=[f], judge=PlantedJudge(),
                                  real_features=np.array([[200.0], [250.0]]))
    assert sum(calls) == 60 and res.record["drawn"] == 60  # 3 x 20, in chunks of 20
    assert res.record["kept"] == 15 and res.record["short"] is True and res.record["needed"] == 20
    assert res.record["rejected_confidence"] == 45
    assert (images[res.kept].mean(axis=(1, 2)) == 250).all()


def test_each_filter_keeps_the_first_passing_images_of_its_own_prefix():
    rng = np.random.default_rng(0)

    def draw(rnd: int, n: int) -> np.ndarray:
        return flat(np.random.default_rng(rnd).integers(0, 256, n))

    loose, strict = CurationFilter(confidence=0.1), CurationFilter(confidence=0.95, max_draw=10)
    images, (a, b) = curate_class(draw, 16, 1, [loose, strict], PlantedJudge(), rng.normal(size=(4, 1)))
    alone, (a2,) = curate_class(draw, 16, 1, [loose], PlantedJudge(), rng.normal(size=(4, 1)))
    assert np.array_equal(images[a.kept], alone[a2.kept])  # sharing the stream with `strict` changes nothing
    assert a.record["kept"] == 16 and a.record["drawn"] < b.record["drawn"]
    assert (images[b.kept].mean(axis=(1, 2)) / 255 >= 0.95).all()


def test_diversity_covers_both_real_modes_where_first_n_covers_one():
    rng = np.random.default_rng(0)
    real = np.concatenate([rng.normal(0, 1, (30, 2)), rng.normal(20, 1, (30, 2))])
    cand = np.concatenate([rng.normal(0, 1, (40, 2)), rng.normal(20, 1, (10, 2))])  # mode A drawn first, mostly
    picked = select_diverse(real, cand, 10, k=5)
    assert len(set(picked.tolist())) == 10
    first = prdc(real, cand[:10], k=5)["coverage"]
    diverse = prdc(real, cand[picked], k=5)["coverage"]
    assert (cand[picked][:, 0] > 10).sum() >= 3  # both modes in the kept set
    assert diverse > first + 0.3, (first, diverse)


@pytest.fixture(scope="module")
def phantom_judge(tmp_path_factory):
    train = phantoms(40, size=32, seed=0)
    cfg = EncoderConfig(size=32, epochs=12, batch_size=32)
    return Judge.train(train, cfg, tmp_path_factory.mktemp("judge")), train


def test_realism_keeps_real_like_phantoms_and_rejects_noise_and_the_other_class(phantom_judge):
    judge, train = phantom_judge
    held = phantoms(40, size=32, seed=7)
    normal = train.classes.index("Normal")
    real = judge.features(train.of_class("Normal").images)
    same = realism_pass(real, judge.features(held.of_class("Normal").images), 5).mean()
    other = realism_pass(real, judge.features(held.of_class("COVID").images), 5).mean()
    noise = np.random.default_rng(0).integers(0, 256, (40, 32, 32), dtype=np.uint8)
    noisy = realism_pass(real, judge.features(noise), 5).mean()
    # measured: same class 0.925 kept, other class 0.125, uniform noise 0.125 (judge of 12 epochs on 80 images)
    assert same >= 0.75 and noisy <= 0.25 and other <= 0.3, (same, other, noisy)
    assert judge.accuracy(held) >= 0.8 and normal == 0
