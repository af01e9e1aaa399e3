"""Load a dataset folder into an :class:`ImageSet`: discover, decode, preprocess, select/merge classes.

``load_imageset(None)`` loads the built-in phantom dataset (synthetic test data, not medical data).
Per-image metadata (``metadata.csv`` or extra manifest columns, e.g. ``population``, ``source_repo``)
lives in ``imageset.meta["image_meta"]`` keyed by path (it survives ``subset``); read a column aligned
with the images with :func:`image_meta_column`. A manifest ``split`` column lands in
``imageset.meta["split"]`` (path -> train/val/test) and :func:`cxraug.data.splits.split_patients` uses it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxraug.data import cache
from cxraug.data.decode import Decoded, SkippedImage, decode_file
from cxraug.data.imageset import ImageSet
from cxraug.data.layouts import Discovery, discover
from cxraug.data.names import match_class
from cxraug.data.preprocess import PreprocessConfig, preprocess
from cxraug.errors import CxraugError
from cxraug.io import write_csv
from cxraug.ui import banner, console, track


@dataclass
class DatasetTable:
    """Every usable image of a dataset, preprocessed, with raw (unmerged) labels; what the cache stores."""

    layout: str
    classes: list[str]  # class names found (folders or manifest labels), empty folders included
    images: np.ndarray  # uint8 (N, S, S)
    labels: list[str]
    paths: list[str]
    patient_ids: list[str]  # "" = none given
    splits: list[str]  # "" = none given
    modes: list[str]  # source mode (PIL mode or "DICOM MONOCHROME2", ...)
    shapes: np.ndarray  # int (N, 2): source height, width
    meta_columns: list[str]
    meta_values: np.ndarray  # str (N, len(meta_columns))
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (no pickles) for :func:`cache.save_arrays`."""
        strings = {k: np.array(getattr(self, k), dtype=str) for k in
                   ("classes", "labels", "paths", "patient_ids", "splits", "modes", "meta_columns")}
        skipped = np.array([[s["path"], s["reason"]] for s in self.skipped], dtype=str).reshape(-1, 2)
        return {**strings, "layout": np.array(self.layout), "images": self.images, "shapes": self.shapes,
                "meta_values": self.meta_values.astype(str), "skipped": skipped}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "DatasetTable":
        lists = {k: [str(v) for v in a[k]] for k in
                 ("classes", "labels", "paths", "patient_ids", "splits", "modes", "meta_columns")}
        return cls(layout=str(a["layout"]), images=a["images"], shapes=a["shapes"],
                   meta_values=a["meta_values"].reshape(len(a["images"]), len(lists["meta_columns"])),
                   skipped=[{"path": str(p), "reason": str(r)} for p, r in a["skipped"]], **lists)


def _decode_records(found: Discovery, cfg: PreprocessConfig, description: str) -> DatasetTable:
    columns = sorted({k for rec in found.records for k in rec.meta})
    images, kept, modes, shapes = [], [], [], []
    skipped = [s.as_dict() for s in found.skipped]
    for rec in track(found.records, description):
        decoded = decode_file(rec.path)
        if isinstance(decoded, SkippedImage):
            skipped.append(decoded.as_dict())
            continue
        mask = None
        if cfg.mask_crop and rec.mask_path is not None:
            mask_decoded = decode_file(rec.mask_path)
            if isinstance(mask_decoded, Decoded):
                mask = mask_decoded.pixels
            else:
                skipped.append({"path": mask_decoded.path,
                                "reason": f"mask unusable, image kept uncropped: {mask_decoded.reason}"})
        images.append(preprocess(decoded.pixels, cfg, mask))
        kept.append(rec)
        modes.append(decoded.mode)
        shapes.append(decoded.pixels.shape)
    return DatasetTable(
        layout=found.layout,
        classes=found.classes,
        images=np.stack(images) if images else np.zeros((0, cfg.size, cfg.size), np.uint8),
        labels=[r.label for r in kept],
        paths=[str(r.path) for r in kept],
        patient_ids=[r.patient_id or "" for r in kept],
        splits=[r.split or "" for r in kept],
        modes=modes,
        shapes=np.array(shapes, dtype=np.int64).reshape(-1, 2),
        meta_columns=columns,
        meta_values=np.array([[r.meta.get(c, "") for c in columns] for r in kept], dtype=str).reshape(
            len(kept), len(columns)),
        skipped=skipped,
    )


def read_dataset(root: str | Path, layout: str = "auto", preprocess: PreprocessConfig = PreprocessConfig(),
                 cache_dir: str | Path | None = None) -> DatasetTable:
    """Discover, decode and preprocess every image under ``root`` (through the cache when given)."""
    root = Path(root).expanduser()
    found = discover(root, layout)
    if not found.records and not found.skipped:
        raise CxraugError(f"no image files found under {root}")
    description = f"decoding {root.name or root}"
    if cache_dir is None:
        return _decode_records(found, preprocess, description)
    files = [r.path for r in found.records] + [r.mask_path for r in found.records if r.mask_path is not None]
    files += [Path(s.path) for s in found.skipped] + found.sources
    key = cache.cache_key(files, {"layout": found.layout, "preprocess": preprocess.model_dump(),
                                  "root": str(root.resolve())})
    path = cache.cache_path(cache_dir, key)
    arrays = cache.load_arrays(path, key)
    if arrays is not None:
        return DatasetTable.from_arrays(arrays)
    table = _decode_records(found, preprocess, description)
    cache.save_arrays(path, key, table.to_arrays())
    return table


def class_mapping(found: list[str], classes: list[str] | None, merge: dict[str, list[str]] | None
                  ) -> tuple[list[str], dict[str, int]]:
    """Final class list and the map found-name -> final index (names not in the map are dropped)."""
    renamed = {name: name for name in found}
    for new, olds in (merge or {}).items():
        for old in olds:
            renamed[found[match_class(old, found)]] = new
    merged = sorted(set(renamed.values()))
    if classes is None:
        final = merged
    else:
        final = [merged[match_class(c, merged)] for c in classes]
        if len(set(final)) != len(final):
            raise CxraugError(f"a class is selected twice in {classes}")
    index = {name: i for i, name in enumerate(final)}
    return final, {name: index[new] for name, new in renamed.items() if new in index}


def to_imageset(table: DatasetTable, classes: list[str] | None = None,
                merge: dict[str, list[str]] | None = None, data: str = "") -> ImageSet:
    """Select and merge classes of ``table``; a selected class without usable images is a CxraugError."""
    final, mapping = class_mapping(table.classes, classes, merge)
    keep = np.array([label in mapping for label in table.labels], dtype=bool)
    labels = np.array([mapping[label] for label in table.labels if label in mapping], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(final))
    for i, name in enumerate(final):
        if counts[i] == 0:
            raise CxraugError(f"class {name!r} has no usable images in {data} "
                              f"({len(table.skipped)} file(s) skipped in the dataset)")
    idx = np.flatnonzero(keep)
    paths = [table.paths[i] for i in idx]
    meta: dict[str, object] = {"data": data, "layout": table.layout}
    if table.meta_columns:
        meta["image_meta"] = {p: dict(zip(table.meta_columns, table.meta_values[i].tolist()))
                              for p, i in zip(paths, idx)}
    if any(table.splits[i] for i in idx):
        meta["split"] = {p: table.splits[i] for p, i in zip(paths, idx) if table.splits[i]}
    return ImageSet(images=table.images[idx], labels=labels, classes=final,
                    patient_ids=np.array([table.patient_ids[i] or table.paths[i] for i in idx], dtype=object),
                    paths=paths, meta=meta)


def skipped_summary(skipped: list[dict[str, str]], total: int) -> str:
    """One line: how many files were skipped, by kind of reason."""
    if not skipped:
        return f"all {total} files usable"
    kinds = Counter(s["reason"].split(":")[0] for s in skipped)
    detail = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    return f"skipped {len(skipped)} of {total} files ({detail})"


def write_skipped(path: str | Path, skipped: list[dict[str, str]]) -> None:
    """Write ``skipped.csv`` (columns path, reason) atomically."""
    write_csv(path, ({"path": s["path"], "reason": s["reason"]} for s in skipped), fields=["path", "reason"])


def image_meta_column(imageset: ImageSet, column: str) -> np.ndarray:
    """Per-image metadata ``column`` aligned with ``imageset.paths`` ("" where unknown)."""
    table = imageset.meta.get("image_meta", {})
    return np.array([table.get(p, {}).get(column, "") for p in imageset.paths], dtype=object)


def load_imageset(root: str | Path | None, layout: str = "auto", preprocess: PreprocessConfig = PreprocessConfig(),
                  classes: list[str] | None = None, merge: dict[str, list[str]] | None = None,
                  cache_dir: str | Path | None = None) -> tuple[ImageSet, list[dict[str, str]]]:
    """Load ``root`` (None: the phantom dataset) -> (ImageSet, skipped files as [{path, reason}]).

    ``classes`` selects and orders classes by name; ``merge`` maps a new name to the names it absorbs,
    e.g. ``{"Pneumonia": ["Viral_Pneumonia", "Bacterial_Pneumonia"]}`` (merge first, then select). Image paths
    (and the patient ids made from them) are absolute, so a folder named two ways (``../data``, ``/srv/data``)
    gives the same images, split and study unit keys.
    """
    data = "phantom" if root is None else str(root)
    if root is None:
        from cxraug.data.phantom import phantom_root

        banner("no --data given: using the built-in PHANTOM dataset (synthetic test data, not medical data)")
        root = phantom_root()
    root = Path(root).resolve()
    table = read_dataset(root, layout, preprocess, cache_dir)
    if table.skipped:
        console.print(f"{data}: {skipped_summary(table.skipped, len(table.paths) + len(table.skipped))}")
    imageset = to_imageset(table, classes, merge, data)
    imageset.meta["preprocess"] = preprocess.model_dump()
    return imageset, table.skipped
