"""Unconditional GANs on the real dev X-rays: per class, with and without DiffAugment; KID and coverage of the
best checkpoints against the real-vs-real floor (JSON on stdout, one run folder per model under ``--out``).

For each class and variant the run is trained with ``cxraug train-generator`` (skipped when its ``run.json``
exists), on the class's ``--n-per-class`` training images (patient split seed 0, 64 px), keeping the best
checkpoint by KID against those training images. Evaluation uses the *validation* images of the class as the
reference, in the domain encoder's features (ResNet-18 trained on the regime's training fold, the metrics
default): KID and PRDC coverage of ``n`` samples of the best checkpoint, where ``n`` = the number of training
images, next to the same numbers for the ``n`` real training images themselves (the floor a perfect
generator that samples new real-like images would reach). Test images are never read.

Example (see BENCHMARKS.md): nice python bench/generators_dev.py --data ../shared/data/cxr/dev
--classes COVID,Normal --out runs/gen-dev > gen-dev.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

VARIANTS = {
    "dcgan": ["--model", "dcgan"],
    "dcgan+da": ["--model", "dcgan", "--diffaugment", "translation,cutout,color"],
    "wgan-gp": ["--model", "wgan-gp"],
    "wgan-gp+da": ["--model", "wgan-gp", "--diffaugment", "translation,cutout,color"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--classes", default="COVID,Normal")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--n-per-class", type=int, default=50)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", default="dcgan=600,wgan-gp=150", help="generator steps per model")
    ap.add_argument("--checkpoint-every", type=int, default=50)
    ap.add_argument("--width", type=int, default=16, help="g_channels = d_channels")
    ap.add_argument("--cache-dir", default=None, help="preprocessed-image cache")
    args = ap.parse_args()
    steps = dict(s.split("=") for s in args.steps.split(","))
    from cxraug.data import PreprocessConfig, apply_regime, load_splits
    from cxraug.generators.base import Generator
    from cxraug.metrics.features import get_extractor
    from cxraug.metrics.kid import kid
    from cxraug.metrics.prdc import prdc

    splits = load_splits(args.data, 0.15, 0.15, 0, preprocess=PreprocessConfig(size=args.size),
                         cache_dir=args.cache_dir)
    train = apply_regime(splits.train, args.n_per_class, seed=0)
    extractor = get_extractor("domain", train=train)  # the regime's training fold, as the CLI scorer
    results: dict = {"extractor": extractor.describe(), "n_per_class": args.n_per_class, "size": args.size,
                     "width": args.width, "steps": steps, "classes": {}}
    for cls in args.classes.split(","):
        real = train.of_class(cls).images
        ref = extractor(splits.val.of_class(cls).images)
        n = len(real)

        def scores(images: np.ndarray) -> dict:
            f = extractor(images)
            return {"kid": kid(ref, f, n_boot=0)["kid"], "coverage": prdc(ref, f, k=5)["coverage"]}

        entry = {"n_val_reference": len(ref), "real_vs_real": scores(real), "models": {}}
        for variant in args.variants.split(","):
            model = variant.split("+")[0]
            run = args.out / variant / cls
            cmd = ["cxraug", "train-generator", "--data", args.data, "--class", cls, *VARIANTS[variant],
                   "--size", str(args.size), "--n-per-class", str(args.n_per_class), "--steps", steps[model],
                   "--checkpoint-every", str(args.checkpoint_every), "--sample-every", str(int(steps[model]) // 5),
                   "--set", f"g_channels={args.width}", "--set", f"d_channels={args.width}", "--out", str(run)]
            if args.cache_dir:
                cmd += ["--cache-dir", args.cache_dir]
            if not (run / "run.json").exists():
                print(" ".join(cmd), file=sys.stderr)
                subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], check=True)
            info = json.loads((run / "run.json").read_text())
            gen = Generator.load(run)
            entry["models"][variant] = {"command": " ".join(cmd), "best_step": info["best_step"],
                                        "best_train_kid": info["best_kid"], "train_minutes": info["wall_s"] / 60,
                                        **scores(gen.sample(n, seed=1))}
        results["classes"][cls] = entry
        print(json.dumps(entry), file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
