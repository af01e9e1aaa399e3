"""GPU readiness and speed: training-step and per-image times of the generators and a ResNet-50 classifier, in fp32
and under bf16 autocast, on one device (JSON on stdout; ``bench/gpu.sh`` runs it within 5 minutes).

Models: DCGAN (64 px, width 64, batch 64), StyleGAN2-ADA ``cpu`` (64 px) and ``paper`` (128 px) presets, DDPM
``cpu64`` (64 px) and ``paper`` (128 px) presets, ResNet-50 from scratch at 128 and 224 px (batch 32, fedoruk
augmentation). Each is timed by :class:`cxraug.study.cost.StepTimer` (one warm-up call, then up to 3 timed calls,
CUDA synchronised): ``step_s`` one optimiser step, ``image_s`` one generated image (generators) or one image's
forward pass (classifier), and the bf16 / fp32 ratio of each. cuDNN benchmark mode is on. ``--device cpu --quick``
runs the same code on CPU with a small DCGAN and the custom CNN at 32 px only (a check that the script works; bf16 is
emulated on CPUs without bf16 units, so its CPU numbers mean nothing).

Example (GPU): sh bench/gpu.sh > runs/bench_gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from typing import Any

import torch

from cxraug.classifiers.config import ClassifierConfig
from cxraug.study.cost import StepTimer

CLASSES = ["COVID", "Normal", "Viral Pneumonia"]


def generators(quick: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    if quick:
        return {"dcgan": ("dcgan", {"size": 32, "batch_size": 16, "g_channels": 16, "d_channels": 16})}
    return {"dcgan": ("dcgan", {"size": 64, "batch_size": 64, "g_channels": 64, "d_channels": 64}),
            "stylegan2-ada-cpu": ("stylegan2-ada", {"preset": "cpu", "size": 64}),
            "ddpm-cpu64": ("ddpm", {"preset": "cpu64"}),
            "stylegan2-ada-paper": ("stylegan2-ada", {"preset": "paper", "size": 128}),
            "ddpm-paper": ("ddpm", {"preset": "paper"})}


def classifiers(quick: bool) -> dict[str, tuple[ClassifierConfig, int]]:
    if quick:
        return {"custom-cnn-32": (ClassifierConfig(model="custom-cnn", batch_size=16, augment="fedoruk"), 32)}
    return {f"resnet50-{s}": (ClassifierConfig(model="resnet50", batch_size=32, augment="fedoruk"), s)
            for s in (128, 224)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="32 px, no paper presets (a CPU check of the script)")
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("bench/gpu.py: no CUDA device here; run it where `device` lends a GPU "
                             "(or use --device cpu --quick to check the script)")
        torch.backends.cudnn.benchmark = True
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"
    t0 = time.time()
    out: dict[str, Any] = {"device": args.device, "torch": torch.__version__, "platform": platform.platform(),
                           "gpu": torch.cuda.get_device_name(0) if device_type == "cuda" else None, "models": {}}
    for precision in ("fp32", "bf16"):
        timer = StepTimer(None, threads=args.threads, device=args.device)
        ctx = torch.autocast(device_type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with ctx:
            for name, (model, config) in generators(args.quick).items():
                t = timer.generator(model, config, CLASSES)
                out["models"].setdefault(name, {})[precision] = {"step_s": t.step_s, "image_s": t.image_s}
            for name, (cfg, size) in classifiers(args.quick).items():
                t = timer.classifier(cfg, len(CLASSES), size)
                out["models"].setdefault(name, {})[precision] = {"step_s": t.step_s, "image_s": t.image_s}
    for times in out["models"].values():
        times["bf16_over_fp32_step"] = times["bf16"]["step_s"] / times["fp32"]["step_s"]
    out["wall_s"] = time.time() - t0
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
