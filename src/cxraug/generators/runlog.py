"""What rank 0 of a generator run logs while it trains (the run folder's ``losses.csv``, ``metric-kid.jsonl`` and
TensorBoard events), and :func:`read_scores`, which reads the checkpoint scores back."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from cxraug import io
from cxraug.tensorboard import summary_writer

#: one JSON line per scored checkpoint, beside ``losses.csv``
SCORES_FILE = "metric-kid.jsonl"


class RunLog:
    """What rank 0 logs while training: the losses of every logged step (``losses.csv``), one JSON line per
    checkpoint score (``metric-kid.jsonl``, as stylegan2-ada's ``metric-*.jsonl``) and TensorBoard events (losses,
    scores, sample grids) when enabled. Both files are append-only: each line is written once (a loss key first
    seen later, such as a lazily computed regulariser, widens the CSV header once). A resumed run first drops the
    lines past the step it resumes from."""

    def __init__(self, out: Path, resume_step: int, tensorboard: bool | None) -> None:
        self.csv_path, self.jsonl_path = out / "losses.csv", out / SCORES_FILE
        self.fields: list[str] = []
        if self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                reader = csv.DictReader(f)
                rows = [r for r in reader if int(r["step"]) <= resume_step]
                self.fields = list(reader.fieldnames or [])
            self._rewrite(rows)
        if self.jsonl_path.exists():
            lines = [ln for ln in self.jsonl_path.read_text().splitlines() if ln.strip()]
            io.write_text(self.jsonl_path, "".join(ln + "\n" for ln in lines if json.loads(ln)["step"] <= resume_step))
        self.tb = summary_writer(out / "tb", tensorboard)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        io.write_csv(self.csv_path, rows, self.fields)

    def losses(self, step: int, losses: dict[str, float]) -> None:
        row = {"step": step, **{k: f"{v:.6g}" for k, v in losses.items()}}
        if not self.fields or set(row) - set(self.fields):  # the first row, or a new loss key: widen the header
            rows = []
            if self.csv_path.exists():
                with open(self.csv_path, newline="") as f:
                    rows = list(csv.DictReader(f))
            self.fields = self.fields + [k for k in row if k not in self.fields]
            self._rewrite(rows)
        with open(self.csv_path, "a", newline="") as f:
            f.write(io.csv_text([row], self.fields, header=False))
        if self.tb is not None:
            for k, v in losses.items():
                self.tb.add_scalar(f"loss/{k}", v, step)

    def scores(self, step: int, scores: dict[str, float]) -> None:
        line = {"step": step, "metric": "kid", "results": scores, "timestamp": time.time()}
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(line) + "\n")
        if self.tb is not None:
            for k, v in scores.items():
                self.tb.add_scalar(f"checkpoint/{k}", v, step)

    def grid(self, step: int, path: Path) -> None:
        if self.tb is not None and path.is_file():
            from PIL import Image

            self.tb.add_image("samples", np.asarray(Image.open(path).convert("L")), step, dataformats="HW")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_scores(run_dir: str | Path) -> list[dict[str, Any]]:
    """The checkpoint scores a run logged (``metric-kid.jsonl``): ``{"step", "metric", "results", ...}`` each."""
    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
