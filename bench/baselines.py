"""cxraug's classifier defaults against a hand-written torchvision ResNet-18 pipeline, on the same split; prints JSON.

Both pipelines see the same patient-level split of a real dataset (``--n-per-class`` training images per class,
the full validation and test folds), use Adam 1e-3, batch 32, balanced class weights, early stopping on the
validation set with the best weights restored, and the same classical transform (cxraug's ``fedoruk`` policy,
applied per batch) for the ``classical`` arm. The hand-written loop is plain PyTorch: ``torchvision`` ResNet-18
(grayscale replicated to 3 channels), a shuffled ``DataLoader``, ``CrossEntropyLoss(weight=...)``. Its stopping
rule comes in two variants:

* ``handwritten``: the rule cxraug's defaults use (validation macro-F1, ties broken by the lower loss, checked
  every max(one pass, 10 steps); stop after 6 checks without improvement; at most max(40 passes, 400 steps));
* ``handwritten-epochs``: the common textbook rule (validation loss every epoch, patience 6 epochs, at most 40
  epochs).

``cxraug`` is ``train_classifier`` with a default ``ClassifierConfig`` (only ``augment`` and ``seed`` set).
Macro-F1 and MCC on the test fold; mean, sd and standard error over seeds per (pipeline, arm).

Run (a few minutes per run and seed on 1 thread; ``--jobs 2`` runs two processes of 1 thread side by side)::

    .venv/bin/python bench/baselines.py --data ../shared/data/cxr/dev --seeds 0 1 2 3 4 --jobs 2 \
        --out runs/bench_baselines.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
import torchvision
from sklearn.metrics import f1_score, matthews_corrcoef
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

PIPELINES = ("cxraug", "handwritten", "handwritten-epochs")
ARMS = ("none", "classical")


def load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from cxraug.data import PreprocessConfig, apply_regime, load_splits

    splits = load_splits(args.data, args.val_frac, args.test_frac, args.split_seed, near_duplicates=True,
                         classes=args.classes.split(","), preprocess=PreprocessConfig(size=args.size),
                         cache_dir=args.cache_dir)
    return apply_regime(splits.train, n_per_class=args.n_per_class, seed=args.split_seed), splits.val, splits.test


def _unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S) -> float (N, 1, S, S) in [-1, 1] (the input cxraug's policies expect)."""
    return x.float().div(127.5).sub(1.0).unsqueeze(1)


def handwritten(train: Any, val: Any, test: Any, seed: int, arm: str, rule: str) -> dict[str, Any]:
    """Plain PyTorch training loop; ``rule`` = ``steps`` (cxraug's default rule) or ``epochs`` (textbook)."""
    from cxraug.augment import POLICIES

    torch.manual_seed(seed)
    k = len(train.classes)
    net = torchvision.models.resnet18(num_classes=k)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    present = np.unique(train.labels)
    weight = torch.zeros(k)
    weight[present] = torch.as_tensor(compute_class_weight("balanced", classes=present, y=train.labels),
                                      dtype=torch.float32)
    crit = nn.CrossEntropyLoss(weight=weight)
    policy = POLICIES.get("fedoruk")() if arm == "classical" else None
    loader = DataLoader(TensorDataset(torch.as_tensor(train.images), torch.as_tensor(train.labels).long()),
                        batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))
    per_pass = len(loader)
    if rule == "steps":
        every, budget = max(per_pass, 10), max(40 * per_pass, 400)
    else:
        every, budget = per_pass, 40 * per_pass
    xv, yv = _unit(torch.as_tensor(val.images)).expand(-1, 3, -1, -1), torch.as_tensor(val.labels).long()
    best, best_state, best_step, bad, step = None, copy.deepcopy(net.state_dict()), 0, 0, 0
    while step < budget and bad < 6:
        for x, y in loader:
            net.train()
            x = _unit(x)
            if policy is not None:
                x = policy(x)
            loss = crit(net(x.expand(-1, 3, -1, -1)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % every == 0 or step == budget:
                net.eval()
                with torch.no_grad():
                    logits = net(xv)
                loss_v = float(crit(logits, yv))
                f1_v = f1_score(val.labels, logits.argmax(1).numpy(), average="macro")
                score = (f1_v, -loss_v) if rule == "steps" else (-loss_v,)
                if best is None or score > best:
                    best, best_state, best_step, bad = score, copy.deepcopy(net.state_dict()), step, 0
                else:
                    bad += 1
            if step >= budget or bad >= 6:
                break
    net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        pred = net(_unit(torch.as_tensor(test.images)).expand(-1, 3, -1, -1)).argmax(1).numpy()
    return {"pred": pred, "best_step": best_step, "steps": step}


def run_cxraug(train: Any, val: Any, test: Any, seed: int, arm: str) -> dict[str, Any]:
    from cxraug.classifiers import ClassifierConfig, train_classifier

    trained = train_classifier(train, val, ClassifierConfig(augment="fedoruk" if arm == "classical" else None,
                                                            seed=seed), device="cpu")
    pred = trained.predict_proba(test.images, device="cpu").argmax(1)
    return {"pred": pred, "best_step": trained.best_step, "steps": trained.steps, "converged": trained.converged}


def job(args: argparse.Namespace, pipeline: str, arm: str, seed: int) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    train, val, test = load(args)
    t0 = time.perf_counter()
    if pipeline == "cxraug":
        res = run_cxraug(train, val, test, seed, arm)
    else:
        res = handwritten(train, val, test, seed, arm, "steps" if pipeline == "handwritten" else "epochs")
    pred = res.pop("pred")
    return {"pipeline": pipeline, "arm": arm, "seed": seed, "macro_f1": float(f1_score(test.labels, pred,
                                                                                         average="macro")),
            "mcc": float(matthews_corrcoef(test.labels, pred)), "seconds": round(time.perf_counter() - t0, 1),
            **res}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in PIPELINES:
        for a in ARMS:
            sel = [r for r in runs if r["pipeline"] == p and r["arm"] == a]
            if not sel:
                continue
            out[f"{p}/{a}"] = {}
            for key in ("macro_f1", "mcc"):
                v = np.array([r[key] for r in sel])
                sd = float(v.std(ddof=1)) if len(v) > 1 else math.nan
                out[f"{p}/{a}"][key] = {"mean": round(float(v.mean()), 4), "sd": round(sd, 4),
                                        "se": round(sd / math.sqrt(len(v)), 4), "n": len(v)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cxr/dev")
    parser.add_argument("--classes", default="COVID,Normal,Viral_Pneumonia")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n-per-class", type=int, default=50)
    parser.add_argument("--val-frac", type=float, default=0.15)
    parser.add_argument("--test-frac", type=float, default=0.25)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--jobs", type=int, default=1, help="processes side by side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default=None, help="JSON file rewritten after every run")
    args = parser.parse_args()
    load(args)  # fill the preprocessing cache once before the workers start
    todo = [(p, a, s) for s in args.seeds for p in args.pipelines.split(",") for a in ARMS]
    runs: list[dict[str, Any]] = []
    header = {"data": args.data, "classes": args.classes, "size": args.size, "n_per_class": args.n_per_class,
              "threads": args.threads, "jobs": args.jobs, "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    with ProcessPoolExecutor(args.jobs) as pool:
        for res in pool.map(job, [args] * len(todo), *zip(*todo)):
            runs.append(res)
            print(json.dumps(res), flush=True)
            if args.out:
                from cxraug.io import write_json

                write_json(args.out, {**header, "runs": runs, "summary": summarise(runs)})
    print(json.dumps({**header, "summary": summarise(runs)}))


if __name__ == "__main__":
    main()
