"""Classical augmentation policies: shape/range/dtype, parameter bounds over many draws, exact flips, identity at
zero magnitude, the affine geometry itself, and offline augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxraug.augment import POLICIES
from cxraug.augment.classical import (RandomAffineBatch, RandomBrightnessBatch, RandomHFlipBatch, augment_offline,
                                      augment_uint8)
from cxraug.data.imageset import ImageSet

DRAWS = 20_000

# The bounds stated in cxraug.augment.classical's docstring.
STATED = {
    "fedoruk": {"angle": 5.0, "tx": 0.05, "ty": 0.05, "scale": 0.15, "shear": 0.05, "factor": 0.4},
    "keras": {"angle": 10.0, "tx": 0.1, "ty": 0.1, "scale": 0.1, "shear": 0.1, "flip": 0.5},
    "flip": {"flip": 0.5},
}


def _batch(n: int = 6, size: int = 24) -> torch.Tensor:
    return torch.rand(n, 1, size, size) * 2 - 1


@pytest.mark.parametrize("name", POLICIES.names())
def test_policy_keeps_shape_range_dtype(name: str) -> None:
    x = _batch()
    y = POLICIES.get(name)()(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1 and y.max() <= 1
    u8 = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    out = augment_uint8(POLICIES.get(name)(), u8)
    assert out.shape == u8.shape and out.dtype == np.uint8


def _applied(policy, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[object, dict[str, torch.Tensor]]]]:
    """``policy(x)`` and the parameters each of its transforms' ``transform()`` was called with."""
    calls: list[tuple[object, dict[str, torch.Tensor]]] = []
    for t in policy.transforms:
        def spy(inpt, params, t=t, real=t.transform):
            calls.append((t, params))
            return real(inpt, params)
        t.transform = spy
    return policy(x), calls


@pytest.mark.parametrize("name", POLICIES.names())
def test_policy_parameters_within_stated_bounds(name: str) -> None:
    """The parameters every image of a batch is transformed with (as ``transform()`` receives them when the policy
    runs) stay within the stated bounds, use the whole range, and reproduce the policy's output."""
    policy = POLICIES.get(name)()
    x = torch.rand(DRAWS, 1, 8, 8) * 2 - 1
    out, calls = _applied(policy, x)
    assert len(calls) == len(policy.transforms)
    drawn = {k: v for _, params in calls for k, v in params.items()}
    assert set(drawn) == set(STATED[name])
    assert all(v.shape == (DRAWS,) for v in drawn.values())  # one draw per image, not one per batch
    again = x
    for t, params in calls:
        again = type(t).transform(t, again, params)
    assert torch.equal(again, out)  # these parameters are the ones the images were transformed with
    for key, bound in STATED[name].items():
        v = drawn[key].float()
        if key == "flip":
            assert abs(v.mean().item() - bound) < 0.02
            continue
        centre = 1.0 if key in ("scale", "factor") else 0.0
        dev = (v - centre).abs()
        assert dev.max() <= bound + 1e-6  # never outside
        assert dev.max() >= 0.99 * bound  # and the whole range is used
        assert abs((v - centre).mean()) < 0.05 * bound  # symmetric


@pytest.mark.parametrize("name", POLICIES.names())
def test_zero_magnitude_is_identity(name: str) -> None:
    x = _batch()
    assert torch.allclose(POLICIES.get(name)(magnitude=0.0)(x), x, atol=1e-5)  # grid sampling rounding only
    u8 = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    assert np.array_equal(augment_uint8(POLICIES.get(name)(magnitude=0.0), u8), u8)


def test_flip_equals_torch_flip() -> None:
    x = _batch(n=64)
    y = POLICIES.get("flip")()(x)
    flipped = torch.tensor([torch.equal(y[i], torch.flip(x[i], [-1])) for i in range(len(x))])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(len(x))])
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54


def test_affine_geometry() -> None:
    """A shift moves content by the stated fraction with edges replicated; rotation has a fixed direction."""
    x = torch.arange(64.0).view(1, 1, 8, 8) / 64.0
    t = RandomAffineBatch()
    one = {"angle": torch.zeros(1), "tx": torch.zeros(1), "ty": torch.zeros(1), "scale": torch.ones(1),
           "shear": torch.zeros(1)}
    shifted = t.transform(x, {**one, "tx": torch.tensor([2 / 8])})
    assert torch.allclose(shifted[..., 2:], x[..., :-2], atol=1e-6)
    assert torch.allclose(shifted[..., 0], x[..., 0], atol=1e-6)  # empty area = replicated edge pixels
    # a positive angle turns the image clockwise as displayed (row 0 at the top): +90 deg is rot90(k=-1)
    rotated = t.transform(x, {**one, "angle": torch.tensor([90.0])})
    assert torch.allclose(rotated, torch.rot90(x, -1, (2, 3)), atol=1e-5)
    dot = torch.zeros(1, 1, 33, 33)
    dot[..., 4, 16] = 1.0  # above the centre
    turned = t.transform(dot, {**one, "angle": torch.tensor([30.0])})[0, 0]
    row, col = divmod(int(turned.argmax()), 33)
    assert row < 16 and col > 16  # moved right: clockwise
    sheared = t.transform(x, {**one, "shear": torch.tensor([0.25])})  # rows move in opposite directions
    assert not torch.allclose(sheared[..., 0, :], x[..., 0, :]) and torch.allclose(
        sheared[..., 4, :], x[..., 4, :], atol=0.03)


def test_brightness_scales_unit_intensities_and_clips() -> None:
    x = torch.full((2, 1, 4, 4), 0.0)  # 0.5 on the [0, 1] scale
    out = RandomBrightnessBatch().transform(x, {"factor": torch.tensor([1.4, 3.0])})
    assert torch.allclose(out[0], torch.full_like(out[0], 0.4))  # 0.5 * 1.4 = 0.7 -> 0.4 in [-1, 1]
    assert torch.equal(out[1], torch.ones_like(out[1]))


def test_flip_probability_argument() -> None:
    assert not RandomHFlipBatch(0.0).sample(1000)["flip"].any()
    assert RandomHFlipBatch(1.0).sample(1000)["flip"].all()


def _imageset() -> ImageSet:
    rng = np.random.default_rng(1)
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)
    synthetic = np.zeros(10, dtype=bool)
    synthetic[-1] = True
    return ImageSet(rng.integers(0, 256, (10, 16, 16), dtype=np.uint8), labels, ["a", "b", "c"],
                    patient_ids=[f"p{i}" for i in range(10)], synthetic=synthetic)


def test_offline_augmentation() -> None:
    train = _imageset()
    state = torch.random.get_rng_state()
    extra = augment_offline(train, "fedoruk", 7, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert extra.counts() == {"a": 7, "b": 7, "c": 7}
    assert not extra.synthetic.any()
    assert all(p.startswith("augmented:fedoruk:") for p in extra.paths)
    assert extra.meta["augmented"] == "fedoruk"
    assert set(extra.patient_ids[extra.labels == 2]) == {"p8"}  # class c: only its real image is a source
    src = {p: i for i, p in enumerate(train.paths)}
    for k, path in enumerate(extra.paths):  # sources used evenly (class a: 7 from 5 images -> 1 or 2 each)
        assert train.labels[src[path.split(":", 3)[3]]] == extra.labels[k]
    uses = np.bincount([src[p.split(":", 3)[3]] for p in extra.paths], minlength=10)
    assert set(uses[:5]) <= {1, 2} and set(uses[5:8]) <= {2, 3}
    again = augment_offline(train, "fedoruk", 7, seed=3)
    assert np.array_equal(again.images, extra.images)
    assert not np.array_equal(augment_offline(train, "fedoruk", 7, seed=4).images, extra.images)
    assert len(train.concat(extra)) == 31
    assert augment_offline(train, "flip", {"b": 2}, seed=0).counts() == {"a": 0, "b": 2, "c": 0}
