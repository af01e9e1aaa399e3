"""Reference generators: oracle draws new phantoms, copy returns training images (also after reload), noise."""

from pathlib import Path

import numpy as np

from cxraug.data.imageset import ImageSet
from cxraug.data.phantom import draw_phantoms
from cxraug.generators import GENERATORS
from cxraug.generators.base import Generator

CLASSES = ["COVID", "Normal"]


def _train() -> ImageSet:
    a, _ = draw_phantoms("COVID", 6, 32, seed=0)
    b, _ = draw_phantoms("Normal", 6, 32, seed=0)
    return ImageSet(np.concatenate([a, b]), [0] * 6 + [1] * 6, CLASSES)


def test_copy_returns_training_images_of_the_class_after_reload(tmp_path: Path) -> None:
    train = _train()
    gen = GENERATORS.get("copy")({"size": 32, "batch_size": 4}, classes=CLASSES)
    gen.fit(train, tmp_path)
    loaded = Generator.load(tmp_path)
    out = loaded.sample(10, label="Normal", seed=3)
    normal = {img.tobytes() for img in train.of_class("Normal").images}
    assert all(img.tobytes() in normal for img in out)
    assert np.array_equal(out, gen.sample(10, label="Normal", seed=3))


def test_oracle_draws_new_phantoms_and_noise_is_noise() -> None:
    train = _train()
    oracle = GENERATORS.get("oracle")({"size": 32}, classes=CLASSES)
    out = oracle.sample(8, label="COVID", seed=1)
    seen = {img.tobytes() for img in train.images}
    assert out.shape == (8, 32, 32) and not any(img.tobytes() in seen for img in out)
    assert np.array_equal(out, oracle.sample(8, label="COVID", seed=1))
    assert not np.array_equal(out, oracle.sample(8, label="COVID", seed=2))
    noise = GENERATORS.get("noise")({"size": 32}, classes=CLASSES).sample(8, label="COVID", seed=1)
    assert 100 < noise.mean() < 155 and noise.std() > 60
