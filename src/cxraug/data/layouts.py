"""Find the images of a dataset folder: which file, which class, which patient, which mask.

Layouts (``layout="auto"`` picks one; pass a name to force it):

- ``kaggle``: the Kaggle COVID-19 Radiography Database, ``ROOT/<Class>/images/*.png`` with lung masks in
  ``ROOT/<Class>/masks/<same stem>.png`` (masks may have another size; they are resized to the image).
- ``folders``: class folders ``ROOT/<class>/*.{png,jpg,jpeg,bmp,tif,tiff,dcm}`` (also the older flat
  Kaggle variant ``ROOT/<Class>/*.png``).
- ``manifest``: a CSV with columns ``path,label`` and optional ``patient_id,mask_path,split``; ROOT is the
  CSV file or a folder holding one; relative paths resolve against the CSV's folder.

With ``kaggle`` and ``folders``, a ``ROOT/metadata.csv`` with an ``id`` column is joined by ``id`` = file
stem: its ``patient_id`` groups images (empty -> the image is its own patient), every other column
(e.g. ``population``, ``source_repo``) is kept as per-image metadata in :attr:`Record.meta`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from cxraug.data.decode import SUFFIXES, SkippedImage
from cxraug.errors import CxraugError

LAYOUTS = ("auto", "kaggle", "folders", "manifest")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}
METADATA_FILE = "metadata.csv"


@dataclass
class Record:
    """One image file of a dataset before decoding."""

    path: Path
    label: str
    patient_id: str | None = None
    mask_path: Path | None = None
    split: str | None = None
    meta: dict[str, str] = field(default_factory=dict)


@dataclass
class Discovery:
    """What a layout found: layout name, class names, records, unusable files, CSVs read."""

    layout: str
    classes: list[str]  # class folders (empty ones included) or manifest labels
    records: list[Record]
    skipped: list[SkippedImage] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)  # metadata/manifest CSVs the records depend on


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name not in ("Thumbs.db", "desktop.ini")


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))


def _image_files(folder: Path) -> tuple[list[Path], list[SkippedImage]]:
    files, skipped = [], []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or not _visible(p):
            continue
        if p.suffix.lower() in SUFFIXES:
            files.append(p)
        else:
            skipped.append(SkippedImage(str(p), f"not an image file type ({p.suffix or 'no extension'})"))
    return files, skipped


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CxraugError(f"cannot read CSV {path}: {exc}") from None
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _manifest_file(root: Path) -> Path | None:
    if root.is_file():
        return root
    for p in sorted(root.glob("*.csv")):
        if {"path", "label"} <= set(_csv_header(p)):
            return p
    return None


def detect_layout(root: Path) -> str:
    """Name of the layout of ``root`` (see module docstring); CxraugError when none fits."""
    if not root.exists():
        raise CxraugError(f"dataset root does not exist: {root}")
    if _manifest_file(root) is not None:
        return "manifest"
    dirs = _class_dirs(root)
    if not dirs:
        raise CxraugError(f"no class folders or manifest CSV in {root} (empty dataset root)")
    if any((d / "images").is_dir() for d in dirs):
        return "kaggle"
    return "folders"


def _join_metadata(root: Path, found: Discovery) -> None:
    """Join ``ROOT/metadata.csv`` by id = file stem (patient_id and per-image columns)."""
    path = root / METADATA_FILE
    if not path.is_file():
        return
    found.sources.append(path)
    rows = _read_csv(path)
    if rows and "id" not in rows[0]:
        raise CxraugError(f"{path} has no 'id' column (columns: {', '.join(rows[0])})")
    by_id = {row["id"]: row for row in rows}
    for rec in found.records:
        row = by_id.get(rec.path.stem)
        if row is None:
            continue
        rec.patient_id = row.get("patient_id") or None
        rec.meta = {k: v for k, v in row.items() if k not in ("id", "patient_id")}


def _discover_folders(root: Path) -> Discovery:
    records, skipped = [], []
    dirs = _class_dirs(root)
    for d in dirs:
        files, bad = _image_files(d)
        skipped += bad
        records += [Record(path=p, label=d.name) for p in files]
    return Discovery("folders", [d.name for d in dirs], records, skipped)


def _discover_kaggle(root: Path) -> Discovery:
    records, skipped = [], []
    dirs = _class_dirs(root)
    for d in dirs:
        image_dir = d / "images" if (d / "images").is_dir() else d
        files, bad = _image_files(image_dir)
        skipped += bad
        masks = {}
        if (d / "masks").is_dir():
            masks = {p.stem: p for p in _image_files(d / "masks")[0]}
        records += [Record(path=p, label=d.name, mask_path=masks.get(p.stem)) for p in files]
    return Discovery("kaggle", [d.name for d in dirs], records, skipped)


def _discover_manifest(root: Path) -> Discovery:
    csv_path = _manifest_file(root)
    if csv_path is None:
        raise CxraugError(f"no manifest CSV with columns path,label in {root}")
    rows = _read_csv(csv_path)
    if not rows:
        raise CxraugError(f"manifest {csv_path} has no rows")
    missing = {"path", "label"} - set(rows[0])
    if missing:
        raise CxraugError(f"manifest {csv_path} lacks column(s): {', '.join(sorted(missing))}")
    base = csv_path.parent
    records, skipped = [], []
    for line, row in enumerate(rows, start=2):
        if not row["path"] or not row["label"]:
            skipped.append(SkippedImage(f"{csv_path}:{line}", "manifest row without path or label"))
            continue
        split = row.get("split") or None
        if split is not None:
            if split.lower() not in SPLIT_NAMES:
                raise CxraugError(f"manifest {csv_path} line {line}: unknown split {split!r} "
                                  f"(use train, val or test)")
            split = SPLIT_NAMES[split.lower()]
        mask = row.get("mask_path") or None
        records.append(Record(
            path=base / row["path"],
            label=row["label"],
            patient_id=row.get("patient_id") or None,
            mask_path=base / mask if mask else None,
            split=split,
            meta={k: v for k, v in row.items() if k not in ("path", "label", "patient_id", "mask_path", "split")},
        ))
    return Discovery("manifest", sorted({r.label for r in records}), records, skipped, [csv_path])


def discover(root: str | Path, layout: str = "auto") -> Discovery:
    """List the records of the dataset at ``root`` in the given (or detected) layout."""
    root = Path(root).expanduser()
    if layout not in LAYOUTS:
        raise CxraugError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    if not root.exists():
        raise CxraugError(f"dataset root does not exist: {root}")
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "manifest":
        return _discover_manifest(root)
    if not root.is_dir():
        raise CxraugError(f"layout {layout!r} needs a folder, got the file {root}")
    found = _discover_kaggle(root) if layout == "kaggle" else _discover_folders(root)
    _join_metadata(root, found)
    return found
