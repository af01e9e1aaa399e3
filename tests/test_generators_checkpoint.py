"""What a generator checkpoint holds: the declared networks and optimisers of every model, loading without
touching the caller's RNG, and the declared translation interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cxraug.augment.synthetic import Sampler, resolve_sources
from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Generator, GeneratorKind

CLASSES = ["COVID", "Normal"]


def _build(name: str) -> Generator:
    cfg = {"size": 16}
    if name == "pix2pix":
        cfg.update(source="Normal", target="COVID")
    return GENERATORS.get(name)(cfg, classes=list(CLASSES))


def _state_holders(gen: Generator) -> list[str]:
    """Every attribute holding a network or an optimiser, in the order build() set them."""
    return [k for k, v in vars(gen).items() if isinstance(v, (nn.Module, torch.optim.Optimizer))]


@pytest.mark.parametrize("name", GENERATORS.names())
def test_every_model_declares_every_network_and_optimiser_it_builds(name: str) -> None:
    gen = _build(name)
    assert list(gen.checkpointed) == _state_holders(gen)  # nothing built is left out of the checkpoint
    assert list(gen.modules()) + list(gen.optimizers()) == [
        k for k in gen.checkpointed if isinstance(getattr(gen, k), nn.Module)] + [
        k for k in gen.checkpointed if isinstance(getattr(gen, k), torch.optim.Optimizer)]


class _Misdeclared(Generator):
    name = "test-misdeclared"
    kind = GeneratorKind.UNCONDITIONAL
    checkpointed = ("net", "opt")  # build() sets no "opt"

    def build(self) -> None:
        self.net = nn.Linear(1, 1)

    def train_step(self, batch: Batch) -> dict[str, float]:
        return {}

    def _generate(self, n, labels, source, rng):
        return torch.zeros(n, 1, self.config.size, self.config.size)


def test_a_declared_name_build_did_not_set_is_refused() -> None:
    with pytest.raises(TypeError, match="'opt'"):
        _Misdeclared({"size": 16})


def _blobs(n: int = 16, size: int = 16) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, (n, size, size), dtype=np.uint8), np.zeros(n), ["COVID"])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("run")
    gen = GENERATORS.get("dcgan")({"size": 16, "batch_size": 8, "g_channels": 8, "d_channels": 8, "latent_dim": 8,
                                   "steps": 3, "sample_every": 1000}, classes=["COVID"])
    gen.fit(_blobs(), out, progress=False, tensorboard=False)
    return str(out)


def test_load_leaves_the_global_rng_alone(run: str) -> None:
    torch.manual_seed(12345)
    before = torch.get_rng_state()
    gen = Generator.load(run)
    assert gen.step == 3
    assert torch.equal(torch.get_rng_state(), before)
    gen.sample(4, seed=1)  # sampling draws from its own seeded generator
    assert torch.equal(torch.get_rng_state(), before)


def test_load_for_resuming_restores_the_rng_training_had(run: str) -> None:
    from cxraug.io import torch_load

    saved = torch_load(f"{run}/checkpoints/last.pt")["rng"]["torch"]
    torch.manual_seed(12345)
    assert not torch.equal(torch.get_rng_state(), saved)
    Generator.load(run, resume=True)
    assert torch.equal(torch.get_rng_state(), saved)


def test_resumed_load_continues_training_exactly(run: str, tmp_path) -> None:
    """Load with resume=True, train two more steps elsewhere: the same weights as five uninterrupted steps."""
    cfg = {"size": 16, "batch_size": 8, "g_channels": 8, "d_channels": 8, "latent_dim": 8, "sample_every": 1000}
    straight = GENERATORS.get("dcgan")({**cfg, "steps": 5}, classes=["COVID"])
    straight.fit(_blobs(), tmp_path / "straight", progress=False, tensorboard=False)
    resumed = Generator.load(f"{run}/checkpoints/last.pt", resume=True)
    resumed.config = resumed.Config(**{**resumed.config.model_dump(), "steps": 5})
    resumed.fit(_blobs(), tmp_path / "more", resume=False, progress=False, tensorboard=False)
    for k, m in straight.modules().items():
        for (pk, a), b in zip(m.state_dict().items(), resumed.modules()[k].state_dict().values()):
            assert torch.equal(a, b), f"{k}.{pk}"


def test_translation_interface_is_declared_on_every_generator() -> None:
    fold = ImageSet(np.zeros((6, 16, 16), np.uint8), np.array([0, 0, 0, 1, 1, 1]), list(CLASSES))
    fold.images[3:] = 200  # the Normal (source) images
    for name in GENERATORS.names():
        gen = _build(name)
        assert isinstance(gen, Sampler)
        if name == "pix2pix":
            assert gen.target_class == "COVID"
            np.testing.assert_array_equal(gen.source_images(fold), fold.images[3:])
            (src,) = resolve_sources(fold, gen)
            assert src.label == "COVID" and np.array_equal(src.source, fold.images[3:])
        else:
            assert gen.target_class is None and gen.source_images(fold) is None


class _Untargeted(Generator):
    """A translation model that does not pick its inputs."""

    name = "test-untargeted"
    kind = GeneratorKind.TRANSLATION
    checkpointed = ("net",)

    def build(self) -> None:
        self.net = nn.Linear(1, 1)

    def train_step(self, batch: Batch) -> dict[str, float]:
        return {}

    def _generate(self, n, labels, source, rng):
        return -source


def test_a_translation_model_without_a_target_needs_its_inputs_passed() -> None:
    fold = ImageSet(np.zeros((4, 16, 16), np.uint8), np.array([0, 0, 1, 1]), list(CLASSES))
    with pytest.raises(CxraugError, match="pass SyntheticSource"):
        resolve_sources(fold, _Untargeted({"size": 16}, classes=list(CLASSES)))
