"""A study in an experiment tracker: one experiment per protocol name, the study a parent run (found again by
its output folder when the study resumes), every unit a nested run with its parameters (grid coordinates and
settings), the metrics of its ``results.csv`` (classifier) or ``generators.csv`` (generator) row and its
artifacts (classifier: confusion matrix and validation history; generator: sample grids, loss log, checkpoint
scores and memorisation galleries). The study run gets the protocol as parameters and the outputs
(``report.html``, ``results.csv``, ``generators.csv``, ``summary.csv``, ...)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from cxraug.classifiers.evaluate import save_confusion_png
from cxraug.study.plan import Unit
from cxraug.study.protocol import Protocol
from cxraug.tracking import MlflowTracker, numeric

#: study outputs attached to the study run
STUDY_FILES = ("report.html", "results.csv", "summary.csv", "comparisons.csv", "generators.csv",
               "generator_classes.csv", "tables.md", "study.json", "protocol.yaml", "plan.json")


class StudyTracking:
    """The tracker runs of one study output folder."""

    def __init__(self, tracker: MlflowTracker, proto: Protocol, out: Path, classes: list[str]) -> None:
        self.tracker = tracker
        self.classes = classes
        self.experiment = tracker.experiment(proto.name)
        tags = {"cxraug.kind": "study", "cxraug.study_dir": str(out.resolve())}
        found = tracker.find(self.experiment, tags)
        if found is None:
            found = tracker.start(self.experiment, proto.name, tags)
            tracker.log(found, {"protocol": proto.model_dump(mode="json"), "output": str(out.resolve())})
        self.parent = found
        self.logged = tracker.children(self.experiment, self.parent)

    def unit(self, unit: Unit, row: dict[str, Any], res: dict[str, Any], folder: Path) -> None:
        """Log a finished unit once (a resumed study skips the units it logged before)."""
        if unit.key in self.logged:
            return
        run = self.tracker.start(self.experiment, unit.label, {"cxraug.unit": unit.key, "cxraug.kind": unit.kind},
                                 parent=self.parent)
        params = {**unit.fields, "needs": unit.needs or "", "spec": unit.spec.model_dump()}
        self.tracker.log(run, params, numeric(row), self._artifacts(unit, res, folder))
        history = folder / "history.csv"
        if history.is_file():
            with open(history, newline="") as f:
                checks = list(csv.DictReader(f))
            for key in ("train_loss", "val_loss", "val_acc", "val_f1"):  # apart from the row's best-check val_f1
                self.tracker.log_series(run, f"check/{key}", [(int(h["steps"]), float(h[key])) for h in checks])
        self.tracker.finish(run)
        self.logged[unit.key] = run

    def _artifacts(self, unit: Unit, res: dict[str, Any], folder: Path) -> list[tuple[Path, str | None]]:
        if unit.kind == "classifier":
            png = folder / "confusion.png"
            if "confusion_matrix" not in res:  # a failed unit: its history only
                return [(folder / "history.csv", None)] if (folder / "history.csv").is_file() else []
            if not png.is_file():
                save_confusion_png({"classes": self.classes, "confusion_matrix": res["confusion_matrix"],
                                    "accuracy": res["metrics"]["accuracy"], "macro_f1": res["metrics"]["f1"]}, png)
            return [(png, None), (folder / "history.csv", None)]
        files: list[tuple[Path, str | None]] = [(p, None) for p in sorted(folder.glob("memorisation_*.png"))]
        for model in sorted(p.parent for p in folder.glob("*/checkpoints")):
            files += [(p, f"{model.name}/samples") for p in sorted((model / "samples").glob("*.png"))]
            files += [(model / name, model.name) for name in ("losses.csv", "metric-kid.jsonl", "MODEL_CARD.md")]
        return files

    def study(self, out: Path, meta: dict[str, Any]) -> None:
        """The study run's outputs (``study.json`` holds the stamp); a resumed study replaces them."""
        self.tracker.log(self.parent, metrics={"units": meta["units"], "wall_s": meta["wall_s"]},
                         artifacts=[(out / f, None) for f in STUDY_FILES])
        self.tracker.finish(self.parent)
