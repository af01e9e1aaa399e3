"""Finished units on disk: ``OUT/units/<key>/``, checked on every resume (damaged files are quarantined)."""

from __future__ import annotations

import hashlib
import io as _io
import os
from pathlib import Path
from typing import Any

import numpy as np

from cxraug import io
from cxraug.classifiers.train import write_history_csv
from cxraug.errors import CorruptFileError, CxraugError
from cxraug.study.plan import Plan, Unit
from cxraug.study.units import OK
from cxraug.ui import console


class UnitStore:
    """Finished units under ``OUT/units/<key>/``: ``result.json`` (+ ``pool.npz`` for generators,
    ``history.csv`` for classifiers: one row per validation check). ``result.json`` is written last, with the
    SHA-256 of each of the other files and of itself (:func:`cxraug.io.write_checked_json`)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = out / "units"

    def folder(self, key: str) -> Path:
        return self.root / key

    def finished_keys(self) -> set[str]:
        """Keys of every finished unit under ``OUT/units/`` (in this plan or not)."""
        return {p.parent.name for p in self.root.glob("*/result.json")} if self.root.is_dir() else set()

    def done(self, key: str) -> bool:
        return (self.folder(key) / "result.json").is_file()

    def save(self, unit: Unit, result: dict[str, Any]) -> None:
        folder = self.folder(unit.key)
        record = {k: v for k, v in result.items() if k not in ("pool", "history")}
        files = {}
        if "history" in result:
            write_history_csv(result["history"], folder / "history.csv")
            files["history.csv"] = io.file_sha256(folder / "history.csv")
        if "pool" in result:
            buf = _io.BytesIO()
            np.savez_compressed(buf, **result["pool"])
            io.write_bytes(folder / "pool.npz", buf.getvalue())
            files["pool.npz"] = hashlib.sha256(buf.getvalue()).hexdigest()
        io.write_checked_json(folder / "result.json", {"key": unit.key, "kind": unit.kind, "fields": unit.fields,
                                                       "spec": unit.spec.model_dump(), "status": OK, **record, "files": files})

    def load(self, key: str) -> dict[str, Any]:
        return io.read_checked_json(self.folder(key) / "result.json")

    def load_pool(self, key: str) -> dict[str, np.ndarray]:
        with np.load(self.folder(key) / "pool.npz") as z:
            return {k: z[k] for k in z.files}

    def repair(self, plan: Plan) -> list[dict[str, str]]:
        """Check every stored file of the plan's units; move damaged ones to ``OUT/quarantine/`` (with a warning
        naming each) so that their units run again. A damaged unit file takes ``result.json`` with it; a damaged
        generator checkpoint takes its model's ``last.pt`` with it, so that model trains again from the start
        (deterministically: the same checkpoints and pool as before)."""
        moved: list[dict[str, str]] = []
        for unit in plan.units:
            folder = self.folder(unit.key)
            if self.done(unit.key):
                bad = self._damaged_result(folder)
                if bad:
                    self._quarantine(unit, bad + [(folder / "result.json", "")], moved)
            if unit.kind == "generator" and not self.done(unit.key):
                for ckpt in sorted(folder.glob("*/checkpoints/*.pt")):
                    try:
                        io.torch_load(ckpt, checksum=True)
                    except CxraugError as exc:
                        why = exc.why if isinstance(exc, CorruptFileError) else str(exc)
                        self._quarantine(unit, [(ckpt, why), (ckpt.parent / "last.pt", "")], moved)
        return moved

    def _damaged_result(self, folder: Path) -> list[tuple[Path, str]]:
        try:
            record = io.read_checked_json(folder / "result.json")
        except CorruptFileError as exc:
            return [(folder / "result.json", exc.why)]
        bad = []
        for name, digest in record.get("files", {}).items():
            path = folder / name
            if not path.is_file():
                bad.append((path, "missing"))
            elif io.file_sha256(path) != digest:
                bad.append((path, "checksum mismatch"))
        return bad

    def _quarantine(self, unit: Unit, files: list[tuple[Path, str]], moved: list[dict[str, str]]) -> None:
        """Move ``files`` (path, what is wrong with it; empty: sound, but moved with the damaged one)."""
        damaged = next(p for p, why in files if why).relative_to(self.out)
        for path, why in files:
            if not path.is_file():
                continue
            rel = path.relative_to(self.out)
            dest = self.out / "quarantine" / rel
            n = 0
            while dest.exists():
                n += 1
                dest = self.out / "quarantine" / f"{rel}.{n}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            reason = why or f"moved with the damaged {damaged}"
            moved.append({"path": str(rel), "reason": reason, "moved_to": str(dest.relative_to(self.out)),
                          "unit": unit.label})
            what = f"{rel} is damaged ({why})" if why else f"{rel} {reason}"
            console.print(f"[yellow]warning[/]: {what}; moved to {dest.relative_to(self.out)}; unit {unit.label} "
                          "runs again")


def remove_partial(out: Path) -> int:
    """Delete the temporary files of writes that a killed run left in ``out`` (only ever called under the lock)."""
    partial = [p for p in out.rglob(".*.tmp") if p.is_file() and io.is_partial(p)]
    for p in partial:
        p.unlink()
    return len(partial)
