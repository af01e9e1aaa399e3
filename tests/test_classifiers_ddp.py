"""DDP classifier training: 2 gloo processes on CPU stay identical and equal one process with twice the batch."""

from __future__ import annotations

import numpy as np
import torch
import torchvision
from lightning_fabric import Fabric

from cxraug.classifiers import ClassifierConfig, train_classifier
from cxraug.classifiers.train import fit
from cxraug.data.imageset import ImageSet


def _data(n: int, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(rng.integers(0, 256, (n, 32, 32), dtype=np.uint8), np.arange(n) % 3, ["a", "b", "c"])


def _flat(model: torch.nn.Module) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()


def _every_rank(fabric: Fabric, train: ImageSet, val: ImageSet, cfg: ClassifierConfig, path: str) -> str:
    """Runs in each DDP process: train; rank 0 saves every rank's final parameters, shape (world, P), to path."""
    torch.set_num_threads(1)
    trained = fit(fabric, train, val, cfg)
    gathered = fabric.all_gather(torch.as_tensor(_flat(trained.model))).numpy()
    if fabric.is_global_zero:
        np.save(path, gathered)
    return path


def _config(tmp_path, batch_size: int) -> ClassifierConfig:
    # Frozen ImageNet-style backbone (BatchNorm in eval mode) + linear head: no per-rank batch statistics and no
    # dropout, so the DDP gradient average must reproduce the large-batch gradient exactly (up to rounding) - with
    # the default balanced class weights too, whose per-rank slices hold different class proportions.
    if not (tmp_path / "r18.pth").exists():
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    return ClassifierConfig(model="resnet18", weights=str(tmp_path / "r18.pth"), epochs=2, batch_size=batch_size,
                            early_stopping=False, lr=1e-2, seed=3)


def test_two_gloo_processes_equal_one_process_with_twice_the_batch(tmp_path) -> None:
    train, val = _data(16, 0), _data(6, 1)
    path = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn").launch(_every_rank, train, val,
                                                                             _config(tmp_path, 4),
                                                                             str(tmp_path / "ranks.npy"))
    per_rank = np.load(path)
    assert per_rank.shape[0] == 2 and np.array_equal(per_rank[0], per_rank[1])  # ranks stay identical
    single = train_classifier(train, val, _config(tmp_path, 8), device="cpu")
    assert single.history[-1]["steps"] == 4  # 16 images / global batch 8, 2 epochs
    assert np.allclose(per_rank[0], _flat(single.model), atol=1e-6)
    small = train_classifier(train, val, _config(tmp_path, 4), device="cpu")
    assert not np.allclose(_flat(small.model), _flat(single.model), atol=1e-6)  # the batch size matters
    # the public entry point: rank 0 writes the checkpoint and its result comes back
    ddp = train_classifier(train, val, _config(tmp_path, 4), out_dir=tmp_path / "ddp", device="cpu", devices=2)
    assert np.allclose(_flat(ddp.model), per_rank[0], atol=1e-6)
    assert [h["steps"] for h in ddp.history] == [2, 4]
    assert (tmp_path / "ddp" / "best.pt").is_file()
