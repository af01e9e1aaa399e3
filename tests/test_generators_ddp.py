"""Generator DDP (``fit(devices=N)``): 2 gloo processes stay identical, equal one process with twice the batch,
and only rank 0 writes; a real GAN (DCGAN) and the CLI run the same path."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch import nn

from cxraug.data.imageset import ImageSet
from cxraug.device import sum_over_ranks
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Generator, GeneratorKind, rank_generator

SIZE = 16


class Affine(Generator):
    """A deterministic toy generator (no noise in training, no BatchNorm): one linear map trained by SGD to mirror
    its input, so that averaged gradients over two half-batches equal the gradient of the whole batch."""

    name = "affine-test"
    kind = GeneratorKind.UNCONDITIONAL
    checkpointed = ("g", "opt")

    def build(self) -> None:
        self.g = nn.Linear(SIZE * SIZE, SIZE * SIZE)
        self.opt = torch.optim.SGD(self.g.parameters(), lr=0.5)

    def train_step(self, batch: Batch) -> dict[str, float]:
        loss = F.mse_loss(self.g(batch.x.flatten(1)), batch.x.flip(-1).flatten(1))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def _generate(self, n: int, labels, source, rng: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, SIZE * SIZE, generator=rng, device=self.device)
        return self.g(z).tanh().view(n, 1, SIZE, SIZE)


def _data(n: int = 32) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8), np.zeros(n, dtype=int), ["a"])


def _flat(gen: Generator) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in gen.g.parameters()])


def _every_rank(fabric: Fabric, cls: type[Generator], start: str, train: ImageSet, out: str, path: str) -> str:
    """Each DDP process trains; rank 0 saves all processes' final parameters (and ADA p), shape (world, P)."""
    torch.set_num_threads(1)
    gen = rank_generator(fabric, cls, start)
    gen.fit(train, out, progress=False)
    flat = torch.cat([p.detach().flatten() for m in gen.modules().values() for p in m.parameters()])
    if hasattr(gen, "ada"):  # ADA's p and the reduction it is adjusted with (rank + 1 summed over ranks)
        flat = torch.cat([flat, torch.tensor(sum_over_ranks([fabric.global_rank + 1.0]) + [gen.ada.p])])
    gathered = fabric.all_gather(flat).numpy()
    if fabric.is_global_zero:
        np.save(path, gathered)
    return path


def _launch(cls: type[Generator], start, train: ImageSet, tmp_path) -> np.ndarray:
    path = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn").launch(
        _every_rank, cls, str(start), train, str(tmp_path / "ranks"), str(tmp_path / "ranks.npy"))
    return np.load(path)


CONFIG = {"size": SIZE, "steps": 6, "log_every": 1, "sample_every": 100, "checkpoint_every": 3, "seed": 2}


def test_two_processes_stay_identical_and_equal_one_process_with_twice_the_batch(tmp_path) -> None:
    train = _data()
    start = Affine({**CONFIG, "batch_size": 4})
    start.save(tmp_path / "start.pt")
    per_rank = _launch(Affine, tmp_path / "start.pt", train, tmp_path)
    assert per_rank.shape[0] == 2 and np.array_equal(per_rank[0], per_rank[1])  # gradients were averaged

    single = Affine({**CONFIG, "batch_size": 8})
    single.fit(train, tmp_path / "single", progress=False)
    assert np.allclose(per_rank[0], _flat(single).numpy(), atol=1e-6)
    half = Affine({**CONFIG, "batch_size": 4})
    half.fit(train, tmp_path / "half", progress=False)
    assert not np.allclose(per_rank[0], _flat(half).numpy(), atol=1e-6)  # the global batch is 2 x 4

    # the public entry point: the caller's object ends in rank 0's final state; one loss log, not one per rank
    ddp = Affine({**CONFIG, "batch_size": 4})
    res = ddp.fit(train, tmp_path / "ddp", progress=False, devices=2)
    assert res.steps == ddp.step == 6
    assert np.allclose(_flat(ddp).numpy(), per_rank[0], atol=1e-6)
    rows = (tmp_path / "ddp" / "losses.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
    # and it resumes: 3 more steps continue from step 6
    more = Affine({**CONFIG, "batch_size": 4, "steps": 9})
    assert more.fit(train, tmp_path / "ddp", progress=False, devices=2).steps == 9


def test_dcgan_trains_with_two_processes(tmp_path) -> None:
    train = _data(48)
    gen = GENERATORS.get("dcgan")({"size": SIZE * 2, "batch_size": 8, "steps": 3, "g_channels": 8, "d_channels": 8,
                                   "checkpoint_every": 3, "sample_every": 3}, classes=["a"])
    big = ImageSet(np.repeat(np.repeat(train.images, 2, 1), 2, 2), train.labels, train.classes)
    before = [p.detach().clone() for p in gen.G.parameters()]
    res = gen.fit(big, tmp_path, progress=False, devices=2)
    assert res.steps == gen.step == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, gen.G.parameters()))  # trained weights came back
    assert Generator.load(tmp_path).step == 3
    assert (tmp_path / "samples" / "step_0000003.png").is_file()


def test_stylegan2_ada_processes_share_weights_and_ada_p(tmp_path) -> None:
    """Two processes see different images, yet adjust ADA's p from both (p would differ per rank otherwise)."""
    from cxraug.generators.stylegan2_ada import StyleGAN2ADA

    rng = np.random.default_rng(1)
    train = ImageSet(rng.integers(0, 256, (32, SIZE, SIZE), dtype=np.uint8), np.arange(32) % 2, ["a", "b"])
    gen = StyleGAN2ADA({"size": SIZE, "batch_size": 4, "latent_dim": 16, "channel_base": 128, "channel_max": 16,
                        "ema_decay": None, "steps": 4, "ada_kimg": 1.0, "ada_interval": 1, "r1_interval": 2,
                        "sample_every": 100, "checkpoint_every": 100}, classes=train.classes)
    gen.ada.p = 0.5  # saved with the model's extra state; moves by 8 / 1000 per step either way
    gen.save(tmp_path / "start.pt")
    per_rank = _launch(StyleGAN2ADA, tmp_path / "start.pt", train, tmp_path)
    assert np.array_equal(per_rank[0], per_rank[1])
    assert per_rank[0][-2] == 3.0  # 1 + 2: the ADA statistic is summed over both processes
    assert per_rank[0][-1] != np.float32(0.5)  # p moved, by the same amount in both processes


def test_sum_over_ranks_outside_a_process_group_is_the_identity() -> None:
    assert sum_over_ranks([1.5, 2.0]) == [1.5, 2.0]
