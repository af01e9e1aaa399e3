"""How few DDIM steps a trained DDPM's free samples and edits stand: KID and coverage against the validation images
at each step count, beside the real-vs-real floor (JSON on stdout).

Reads a finished study folder (``--study``): its ``protocol.yaml`` gives the data, split and subset draws, its
``plan.json`` the DDPM generator units. For each such unit (or the one named by ``--unit``) the training subset of its
regime and draw is rebuilt exactly as the study built it; the generator's ``last`` checkpoint (the one a
``checkpoint: last`` study uses) samples ``--n-per-class`` images per class and edits every training image once at
each ``--strength``, at each of ``--steps`` DDIM steps (seed 0; free samples at the model's own guidance, edits at
``--guidance``). Scores, in the features the study itself scored its generators with
(:func:`cxraug.study.runner.study_extractor`: the domain encoder trained on the whole real training fold, not on
the subset, so that these numbers and the study's ``generator_classes.csv`` are comparable): KID x 1000 and PRDC
coverage (k = 5) against the *validation* images of the study's split (test images are never read), per class and
pooled; for edits also the mean absolute pixel change from the source (0-255). ``floor`` is the same for the real
training images themselves. Seconds per image are wall times at ``--threads``.

Example: python bench/ddpm_few_steps.py --study runs/recipes --steps 2,4,6,10,15 > runs/ddpm_few_steps.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxraug.data.imageset import ImageSet
from cxraug.generators.base import Generator
from cxraug.metrics.kid import kid
from cxraug.metrics.prdc import prdc
from cxraug.study.data import load_study_data, sizes_needed
from cxraug.study.protocol import load_protocol
from cxraug.study.runner import study_extractor


def _scorer(extractor: Any, val: ImageSet):
    ref = {c: extractor(val.of_class(c).images) for c in val.classes}
    ref_all = np.concatenate(list(ref.values()))

    def score(images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        f = extractor(images)
        out: dict[str, Any] = {"kid_x1000": 1000 * kid(ref_all, f, n_boot=0)["kid"],
                               "coverage": prdc(ref_all, f, k=5)["coverage"], "per_class": {}}
        for i, c in enumerate(val.classes):
            fc = f[labels == i]
            out["per_class"][c] = {"kid_x1000": 1000 * kid(ref[c], fc, n_boot=0)["kid"],
                                   "coverage": prdc(ref[c], fc, k=5)["coverage"]}
        return out

    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, type=Path, help="a study output folder with DDPM generator units")
    ap.add_argument("--unit", default=None, help="one generator unit key (default: every DDPM unit)")
    ap.add_argument("--steps", default="2,4,6,10,15")
    ap.add_argument("--strength", default="0.3,0.5")
    ap.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance of the edits")
    ap.add_argument("--n-per-class", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    proto = load_protocol(args.study / "protocol.yaml")
    data = load_study_data(proto, None, None)
    data_size, _, _ = sizes_needed(proto)
    extractor = study_extractor(proto, data, data_size, "cpu")
    if extractor is None:
        raise SystemExit(f"{args.study / 'protocol.yaml'} sets metrics.image_metrics: false; nothing to score with")
    plan = json.loads((args.study / "plan.json").read_text())
    units = [u for u in plan if u["kind"] == "generator" and u["fields"]["model"] == "ddpm"
             and args.unit in (None, u["key"])]
    if not units:
        raise SystemExit(f"no DDPM generator unit {args.unit or ''} in {args.study / 'plan.json'}")
    results: dict[str, Any] = {"study": str(args.study), "encoder": proto.metrics.encoder, "units": {}}
    for u in units:
        gen = Generator.load(args.study / "units" / u["key"] / "model" / "checkpoints" / "last.pt")
        train = data.subsets[(u["fields"]["regime"], u["fields"]["draw"], gen.config.size)]
        val = data.splits[gen.config.size].val
        score = _scorer(extractor, val)
        labels = np.repeat(np.arange(len(train.classes)), args.n_per_class)
        entry: dict[str, Any] = {"fields": u["fields"], "train_steps": gen.step, "n_val": len(val),
                                 "floor": score(train.images, train.labels), "samples": {}, "edits": {}}
        for k in (int(v) for v in args.steps.split(",")):
            gen.config.sample_steps = k
            t0 = time.perf_counter()
            imgs = gen.sample(len(labels), label=labels, seed=0)
            entry["samples"][k] = {"s_per_image": (time.perf_counter() - t0) / len(labels), **score(imgs, labels)}
            for s in (float(v) for v in args.strength.split(",")):
                t0 = time.perf_counter()
                edits = gen.edit(train.images, train.labels, s, steps=k, guidance=args.guidance, seed=0)
                change = np.abs(edits.astype(np.int16) - train.images.astype(np.int16)).mean()
                entry["edits"].setdefault(str(s), {})[k] = {
                    "s_per_image": (time.perf_counter() - t0) / len(edits), "mean_abs_change": float(change),
                    **score(edits, train.labels)}
        results["units"][u["key"]] = entry
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
