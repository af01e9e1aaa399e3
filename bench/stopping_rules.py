"""How the classifier defaults were chosen: validation curves of full-budget runs, and stopping rules replayed on them.

The validation fold is cut by patient into halves A and B (crc32 of the patient id). ``curves`` trains cxraug's
ResNet-18 (Adam, batch 32, fixed budget, no early stopping) and logs loss, accuracy and macro-F1 on A and B every
``--every`` steps to a JSONL file (one line per run). ``replay`` applies each stopping rule to the logged curves:
the rule selects its check on half A (loss or macro-F1, patience in checks, a cap in steps) and is scored by the
macro-F1 on half B at that check. The test fold is never read. Both print JSON.

    .venv/bin/python bench/stopping_rules.py curves --arm none --seeds 0 1 2 --out runs/curves.jsonl
    .venv/bin/python bench/stopping_rules.py curves --arm classical --seeds 0 1 2 --out runs/curves.jsonl
    .venv/bin/python bench/stopping_rules.py replay runs/curves.jsonl
"""

from __future__ import annotations

import argparse
import json
import zlib
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

#: (label, check every N steps, patience in checks or None = full budget, cap in steps)
RULES = (("patience 30 steps (about 6 passes: the old rule)", 10, 3, 200),
         ("check every 10 steps, patience 6 checks, cap 400", 10, 6, 400),
         ("check every 20 steps, patience 6 checks, cap 400", 20, 6, 400),
         ("check every 10 steps, full 300 steps, best restored", 10, None, 300))


def curves(args: argparse.Namespace) -> None:
    from cxraug.augment import POLICIES
    from cxraug.classifiers.base import build_classifier
    from cxraug.data import PreprocessConfig, apply_regime, load_splits
    from cxraug.data.imageset import to_unit

    torch.set_num_threads(args.threads)
    splits = load_splits(args.data, 0.15, 0.25, 0, near_duplicates=True, classes=args.classes.split(","),
                         preprocess=PreprocessConfig(size=64), cache_dir=args.cache_dir)
    train = apply_regime(splits.train, n_per_class=args.n_per_class, seed=0)
    half = np.array([zlib.crc32(str(p).encode()) % 2 for p in splits.val.patient_ids])
    halves = {"a": splits.val.subset(half == 0), "b": splits.val.subset(half == 1)}
    x_all, y_all = torch.as_tensor(train.images), torch.as_tensor(train.labels).long()
    for seed in args.seeds:
        torch.manual_seed(seed)
        net = build_classifier("resnet18", len(train.classes), 64)
        torch.manual_seed(seed)  # the same draws for augmentation whatever the build consumed
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps) if args.cosine else None
        policy = POLICIES.get("fedoruk")() if args.arm == "classical" else None
        rng, buffer, rows = np.random.default_rng(seed), np.zeros(0, dtype=np.int64), []
        for step in range(1, args.steps + 1):
            net.train()
            while len(buffer) < 32:
                buffer = np.concatenate([buffer, rng.permutation(len(y_all))])
            idx, buffer = buffer[:32], buffer[32:]
            x = to_unit(x_all[idx])
            loss = nn.functional.cross_entropy(net(policy(x) if policy is not None else x), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if step % args.every:
                continue
            net.eval()
            row: dict[str, Any] = {"step": step}
            with torch.no_grad():
                for tag, part in halves.items():
                    logits = net(to_unit(torch.as_tensor(part.images)))
                    pred = logits.argmax(1).numpy()
                    row[f"{tag}_loss"] = float(nn.functional.cross_entropy(logits, torch.as_tensor(part.labels)))
                    row[f"{tag}_f1"] = float(f1_score(part.labels, pred, average="macro"))
            rows.append(row)
        line = {"arm": args.arm, "cosine": args.cosine, "seed": seed, "n_per_class": args.n_per_class,
                "curve": rows}
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps({k: v for k, v in line.items() if k != "curve"}), flush=True)


def select(curve: list[dict[str, float]], every: int, patience: int | None, cap: int, by: str) -> tuple[float, int]:
    """(macro-F1 on half B, step) of the check a rule picks on half A."""
    checks = [r for r in curve if r["step"] % every == 0 and r["step"] <= cap]
    best, chosen, bad = None, checks[0], 0
    for r in checks:
        score = (r["a_f1"], -r["a_loss"]) if by == "f1" else (-r["a_loss"],)
        if best is None or score > best:
            best, chosen, bad = score, r, 0
        else:
            bad += 1
            if patience is not None and bad >= patience:
                break
    return chosen["b_f1"], chosen["step"]


def replay(args: argparse.Namespace) -> None:
    runs = [json.loads(line) for line in open(args.curves)]
    out = []
    for group in sorted({(r["arm"], r["cosine"], r["n_per_class"]) for r in runs}):
        sel = [r for r in runs if (r["arm"], r["cosine"], r["n_per_class"]) == group]
        for label, every, patience, cap in RULES:
            for by in ("loss", "f1"):
                picks = [select(r["curve"], every, patience, cap, by) for r in sel]
                f1 = np.array([p[0] for p in picks])
                out.append({"arm": group[0], "cosine": group[1], "n_per_class": group[2], "rule": label,
                            "select_by": by, "seeds": [r["seed"] for r in sel], "val_b_f1_mean": round(f1.mean(), 3),
                            "val_b_f1_sd": round(f1.std(ddof=1), 3) if len(f1) > 1 else None,
                            "best_steps": [p[1] for p in picks]})
    print(json.dumps(out, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("curves")
    c.add_argument("--data", default="../shared/data/cxr/dev")
    c.add_argument("--classes", default="COVID,Normal,Viral_Pneumonia")
    c.add_argument("--n-per-class", type=int, default=50)
    c.add_argument("--arm", choices=["none", "classical"], default="none")
    c.add_argument("--cosine", action="store_true", help="cosine schedule over the budget (default: constant)")
    c.add_argument("--steps", type=int, default=400)
    c.add_argument("--every", type=int, default=10)
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--cache-dir", default=None)
    c.add_argument("--out", required=True, help="JSONL file, appended")
    r = sub.add_parser("replay")
    r.add_argument("curves")
    args = parser.parse_args()
    (curves if args.mode == "curves" else replay)(args)


if __name__ == "__main__":
    main()
