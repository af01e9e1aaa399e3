"""Score the checkpoints of a generator run after the fact (as stylegan2-ada's ``calc_metrics.py``).

``score_checkpoints(run, every=False, metrics=("kid",), against=None) -> rows`` reloads the run's training data
from ``run.json`` (same dataset, split, regime and preprocessing), builds the scorer the run used (same
features and real images, or the other fold with ``against``) and scores the samples each checkpoint draws for
checkpoint scoring, so a checkpoint scored during training gets the same KID again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cxraug.errors import CxraugError
from cxraug.generators.base import Generator


def run_checkpoints(run: Path, every: bool) -> list[Path]:
    """``best.pt`` and ``last.pt`` of a run (``every``: all its checkpoints, by step), or the one ``.pt`` given."""
    if run.is_file():
        return [run]
    folder = run / "checkpoints"
    found = sorted(folder.glob("*.pt")) if every else [p for p in (folder / "best.pt", folder / "last.pt")
                                                        if p.exists()]
    if not found:
        raise CxraugError(f"no generator checkpoints under {folder}")
    return found


def score_checkpoints(run: str | Path, every: bool = False, metrics: tuple[str, ...] = ("kid",),
                      against: str | None = None, device: str = "cpu") -> list[dict[str, Any]]:
    """One row per checkpoint: ``checkpoint``, ``step``, ``against`` and the scores (``kid``, ``kid_sd``,
    ``fid``, ``precision``/``recall``/``density``/``coverage``, per-class ``kid/<c>``...)."""
    from cxraug.generators.train import DataOptions, class_scorer, modelled

    run = Path(run)
    folder = run.parent.parent if run.is_file() else run
    record_path = folder / "run.json"
    if not record_path.is_file():
        raise CxraugError(f"{folder} has no run.json (score-checkpoints needs a run of cxraug train-generator)")
    record = json.loads(record_path.read_text())
    opts = record.get("options")
    if opts is None:
        raise CxraugError(f"{record_path} predates score-checkpoints (no 'options'); re-train with this cxraug")
    against = against or opts["score_against"]
    if against not in ("train", "val"):
        raise CxraugError(f"--against must be train or val (never test), got {against!r}")
    bad = sorted(set(metrics) - {"kid", "fid", "prdc"})
    if bad:
        raise CxraugError(f"unknown metrics {bad}; choose from kid, fid, prdc")
    features = opts["scorer"] if opts["scorer"] != "none" else "domain"
    train, val = DataOptions(**opts["data"]).load()
    label, _ = modelled(record["model"], train, opts["cls"])
    real = train if against == "train" else val
    scorer, rows = None, []
    for ckpt in run_checkpoints(run, every):
        gen = Generator.load(ckpt, device=device)
        if scorer is None:
            metric = "+".join(m for m in ("kid", "fid", "prdc") if m == "kid" or m in metrics)
            scorer = class_scorer(gen, train, real, features, metric=metric)
        images, labels = gen.eval_samples(gen.config.kid_samples, gen.training_set(train, label))
        rows.append({"checkpoint": ckpt.name, "step": gen.step, "against": against, **scorer(images, labels)})
    return rows
