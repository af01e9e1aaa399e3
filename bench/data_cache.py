"""Benchmark: one training epoch of images read through the cxraug cache vs torchvision ImageFolder.

Prints one JSON object. The cached side is timed conservatively: a cache *hit* load (file listing,
stat of every file, key, reading the .npz) plus one epoch of float batches; the ImageFolder side decodes,
converts to grayscale, resizes and normalises every image every epoch (what a plain pipeline does).

    .venv/bin/python bench/data_cache.py --root ../shared/data/cxr/dev --size 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets, transforms

from cxraug.data import PreprocessConfig, load_imageset, to_unit


def _epoch(loader: DataLoader) -> int:
    n = 0
    for images, _ in loader:
        n += len(images)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/cxr/dev", help="class-folder dataset")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = PreprocessConfig(size=args.size)

    with tempfile.TemporaryDirectory() as cache_dir:
        t0 = time.perf_counter()
        load_imageset(args.root, preprocess=cfg, cache_dir=cache_dir)
        build_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        imageset, _ = load_imageset(args.root, preprocess=cfg, cache_dir=cache_dir)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        loader = DataLoader(TensorDataset(to_unit(imageset.images), torch.as_tensor(imageset.labels)),
                            batch_size=args.batch, shuffle=True)
        n_cached = _epoch(loader)
        cached_epoch_s = time.perf_counter() - t0

    tf = transforms.Compose([transforms.Grayscale(1), transforms.Resize((args.size, args.size)),
                             transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    folder = datasets.ImageFolder(args.root, transform=tf)
    t0 = time.perf_counter()
    n_folder = _epoch(DataLoader(folder, batch_size=args.batch, shuffle=True, num_workers=0))
    folder_epoch_s = time.perf_counter() - t0

    cached_rate = n_cached / (load_s + cached_epoch_s)
    folder_rate = n_folder / folder_epoch_s
    print(json.dumps({
        "root": args.root, "size": args.size, "images": n_cached, "threads": args.threads,
        "cache_build_s": round(build_s, 2),
        "cache_hit_load_s": round(load_s, 3),
        "cache_epoch_s": round(cached_epoch_s, 3),
        "cache_images_per_s": round(cached_rate, 1),
        "cache_images_per_s_epoch_only": round(n_cached / cached_epoch_s, 1),
        "imagefolder_epoch_s": round(folder_epoch_s, 2),
        "imagefolder_images_per_s": round(folder_rate, 1),
        "speedup": round(cached_rate / folder_rate, 1),
    }))


if __name__ == "__main__":
    main()
