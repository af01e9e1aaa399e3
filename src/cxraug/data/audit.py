"""Data audit: duplicates, near-duplicates, split leakage and class/source shortcut confounding.

- Exact duplicates: identical file bytes (SHA-256).
- Near-duplicates: 64-bit perceptual hashes (``imagehash.phash`` of the preprocessed image) within
  ``max_distance`` bits, confirmed by a 32 px thumbnail correlation >= ``NEAR_CORR`` (best over +-1 px
  translations); catches resized, re-encoded and slightly shifted copies (recall measured in BENCHMARKS.md).
- Leakage: a patient id, or a duplicate/near-duplicate pair, on two sides of train/val/test.
- Shortcuts: class x value tables for metadata columns such as ``source_repo`` and ``population``; a
  class that comes almost entirely (>= ``SHORTCUT_SHARE``) from one value that the other classes mostly
  lack can be recognised by its source or population instead of its disease.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image
from rich.markup import escape
from rich.table import Table
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cxraug.data.imageset import ImageSet
from cxraug.data.load import DatasetTable, read_dataset
from cxraug.data.preprocess import PreprocessConfig
from cxraug.data.splits import assign_splits
from cxraug.data.thumbnails import centre_rows, thumbnails, unit_rows
from cxraug.ui import console, track

NEAR_DISTANCE = 12  # pHash candidates: bits of 64 ...
NEAR_CORR = 0.95  # ... confirmed by this thumbnail correlation (calibration on the dev set: BENCHMARKS.md)
THUMB = 32  # thumbnail side for the correlation
SHIFT = 1  # translations (thumbnail px) searched by the correlation
SHORTCUT_SHARE = 0.9  # a class this concentrated on one value ...
SHORTCUT_GAP = 0.3  # ... that is this much rarer in the other classes -> warning
CONFOUND_COLUMNS = ("source_repo", "source", "site", "hospital", "population")
MAX_LISTED = 200  # pairs/patients listed in a report; counts are always complete


def perceptual_hashes(images: np.ndarray) -> np.ndarray:
    """uint64 pHash of each uint8 (S, S) image."""
    out = np.zeros(len(images), dtype=np.uint64)
    for i, img in enumerate(track(images, "perceptual hashes")):
        bits = imagehash.phash(Image.fromarray(img)).hash.reshape(-1)
        out[i] = np.packbits(bits).view(">u8")[0]
    return out


def hash_pairs(hashes: np.ndarray, max_distance: int, chunk: int = 512) -> np.ndarray:
    """(K, 3) int array of (i, j, hamming distance), i < j, for hashes within ``max_distance`` bits."""
    found = [np.zeros((0, 3), np.int64)]
    for start in range(0, len(hashes), chunk):
        dist = np.bitwise_count(hashes[start:start + chunk, None] ^ hashes[None, :])
        i, j = np.nonzero(dist <= max_distance)
        upper = i + start < j
        found.append(np.stack([i[upper] + start, j[upper], dist[i[upper], j[upper]]], axis=1).astype(np.int64))
    return np.concatenate(found)


def _thumbnails(images: np.ndarray, side: int = THUMB) -> np.ndarray:
    """float32 (N, side, side) area-resized thumbnails."""
    return thumbnails(images, side, "area")


def _zscore(x: np.ndarray) -> np.ndarray:
    return unit_rows(centre_rows(x), 1e-6, add=True)


def shift_correlation(thumbs: np.ndarray, pairs: np.ndarray, shift: int = SHIFT, chunk: int = 4096) -> np.ndarray:
    """Best Pearson correlation of each pair's thumbnails over translations of up to ``shift`` px."""
    side = thumbs.shape[-1]
    inner = slice(shift, side - shift)
    best = np.full(len(pairs), -1.0, dtype=np.float32)
    for start in range(0, len(pairs), chunk):
        part = pairs[start:start + chunk]
        a = _zscore(thumbs[part[:, 0], inner, inner])
        for dy in range(-shift, shift + 1):
            for dx in range(-shift, shift + 1):
                b = _zscore(thumbs[part[:, 1], shift + dy:side - shift + dy, shift + dx:side - shift + dx])
                best[start:start + chunk] = np.maximum(best[start:start + chunk], (a * b).sum(axis=1))
    return best


def near_pairs(images: np.ndarray, max_distance: int = NEAR_DISTANCE, min_corr: float = NEAR_CORR) -> np.ndarray:
    """Near-duplicate pairs (K, 3) = (i, j, pHash distance): pHash within ``max_distance`` bits and
    thumbnail correlation (best over small shifts) >= ``min_corr``."""
    candidates = hash_pairs(perceptual_hashes(images), max_distance)
    if not len(candidates):
        return candidates
    return candidates[shift_correlation(_thumbnails(images), candidates) >= min_corr]


def file_digests(paths: list[str]) -> list[str]:
    """SHA-256 of each file's bytes ("" when unreadable)."""
    out = []
    for p in track(paths, "content hashes"):
        try:
            out.append(hashlib.sha256(Path(p).read_bytes()).hexdigest())
        except OSError:
            out.append("")
    return out


def exact_pairs(digests: list[str]) -> np.ndarray:
    """(K, 2) index pairs of items with equal non-empty digests (each item paired with its group's first)."""
    first: dict[str, int] = {}
    pairs = []
    for i, d in enumerate(digests):
        if d and d in first:
            pairs.append((first[d], i))
        elif d:
            first[d] = i
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def merge_groups(groups: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Group names after joining the groups of every pair (connected components); str array."""
    groups = np.asarray(groups).astype(str)
    names, inverse = np.unique(groups, return_inverse=True)
    n = len(names)
    edges = inverse[pairs[:, :2]] if len(pairs) else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    first = {}
    for k in np.argsort(names):
        first.setdefault(component[k], names[k])
    return np.array([first[component[k]] for k in inverse], dtype=object)


def near_duplicate_groups(imageset: ImageSet, max_distance: int = NEAR_DISTANCE) -> np.ndarray:
    """Patient groups of ``imageset`` with the groups of near-duplicate images joined."""
    return merge_groups(imageset.patient_ids, near_pairs(imageset.images, max_distance))


def leakage(split_names: np.ndarray, patient_ids: np.ndarray, pairs: np.ndarray, paths: list[str]
            ) -> tuple[dict[str, Any], list[str]]:
    """Patients and duplicate pairs that cross split boundaries -> (report, warnings)."""
    split_names = np.asarray(split_names).astype(str)
    by_patient: dict[str, set[str]] = {}
    for pid, split in zip(np.asarray(patient_ids).astype(str).tolist(), split_names.tolist()):
        by_patient.setdefault(pid, set()).add(split)
    patients = [{"patient_id": pid, "splits": sorted(found)} for pid, found in sorted(by_patient.items())
                if len(found) > 1]
    crossing = [(int(i), int(j)) for i, j in pairs[:, :2] if split_names[i] != split_names[j]]
    report = {
        "n_patients_crossing": len(patients),
        "patients": patients[:MAX_LISTED],
        "n_duplicates_crossing": len(crossing),
        "duplicates": [{"a": paths[i], "b": paths[j], "splits": [split_names[i], split_names[j]]}
                       for i, j in crossing[:MAX_LISTED]],
    }
    warnings = []
    if patients:
        warnings.append(f"LEAKAGE: {len(patients)} patient(s) appear in more than one of train/val/test "
                        f"(e.g. {patients[0]['patient_id']} in {', '.join(patients[0]['splits'])})")
    if crossing:
        i, j = crossing[0]
        warnings.append(f"LEAKAGE: {len(crossing)} duplicate or near-duplicate pair(s) cross train/val/test "
                        f"(e.g. {paths[i]} [{split_names[i]}] ~ {paths[j]} [{split_names[j]}])")
    return report, warnings


def confounds(labels: list[str], values: list[str], column: str) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Class x value counts for one metadata column and its shortcut warnings."""
    values = [v or "(missing)" for v in values]
    table: dict[str, dict[str, int]] = {}
    for label, value in zip(labels, values):
        row = table.setdefault(label, {})
        row[value] = row.get(value, 0) + 1
    totals = Counter(values)
    warnings = []
    for label, row in sorted(table.items()):
        value, count = max(row.items(), key=lambda kv: kv[1])
        n_class, n_rest = sum(row.values()), len(values) - sum(row.values())
        share = count / n_class
        rest = (totals[value] - count) / n_rest if n_rest else 1.0
        if share >= SHORTCUT_SHARE and share - rest >= SHORTCUT_GAP:
            warnings.append(f"SHORTCUT: {share:.0%} of {label} images have {column}={value} (vs {rest:.0%} of "
                            f"the other classes): a classifier can learn {column} instead of the disease")
    return table, warnings


def _sizes(table: DatasetTable) -> dict[str, Any]:
    common = Counter(f"{h}x{w}" for h, w in table.shapes.tolist())
    return {
        "min_side": int(table.shapes.min()) if len(table.shapes) else 0,
        "max_side": int(table.shapes.max()) if len(table.shapes) else 0,
        "most_common": [[size, n] for size, n in common.most_common(10)],
    }


def inspect_dataset(root: str | Path, layout: str = "auto", size: int = 64, val_frac: float = 0.15,
                    test_frac: float = 0.15, seed: int = 0, max_distance: int = NEAR_DISTANCE,
                    cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Everything ``cxraug data inspect`` reports, as one JSON-able dict (``warnings`` collects all)."""
    table = read_dataset(root, layout, PreprocessConfig(size=size), cache_dir)
    n = len(table.paths)
    classes = {c: 0 for c in table.classes}
    classes.update(Counter(table.labels))
    patient_ids = np.array([pid or path for pid, path in zip(table.patient_ids, table.paths)], dtype=object)
    digests = file_digests(table.paths)
    exact = exact_pairs(digests)
    near = near_pairs(table.images, max_distance)
    near_only = [(int(i), int(j), int(d)) for i, j, d in near if not digests[i] or digests[i] != digests[j]]
    pairs = np.concatenate([exact, np.array([p[:2] for p in near_only], dtype=np.int64).reshape(-1, 2)])
    warnings = [f"EMPTY CLASS: {c} has no usable images" for c, k in classes.items() if k == 0]
    if all(table.splits) and n:
        split_names, split_source = np.array(table.splits, dtype=object), "manifest"
    else:
        label_index = {c: i for i, c in enumerate(sorted(set(table.labels)))}
        split_names = assign_splits(np.array([label_index[x] for x in table.labels], dtype=np.int64),
                                    patient_ids, val_frac, test_frac, seed) if n else np.zeros(0, object)
        split_source = f"cxraug patient split (val {val_frac}, test {test_frac}, seed {seed})"
    leak, leak_warnings = leakage(split_names, patient_ids, pairs, table.paths)
    report: dict[str, Any] = {
        "root": str(root),
        "layout": table.layout,
        "n_files": n + len(table.skipped),
        "n_usable": n,
        "classes": classes,
        "patients": int(len(np.unique(patient_ids.astype(str)))),
        "images_without_patient_id": int(sum(1 for p in table.patient_ids if not p)),
        "sizes": _sizes(table),
        "modes": dict(Counter(table.modes)),
        "skipped": table.skipped,
        "duplicates": {
            "exact_pairs": len(exact),
            "exact": [{"a": table.paths[i], "b": table.paths[j]} for i, j in exact[:MAX_LISTED].tolist()],
            "near_pairs": len(near_only),
            "near": [{"a": table.paths[i], "b": table.paths[j], "distance": d} for i, j, d in near_only[:MAX_LISTED]],
            "max_distance": max_distance,
        },
        "split": {"source": split_source,
                  "counts": {s: dict(Counter(np.array(table.labels, dtype=object)[split_names == s]))
                             for s in ("train", "val", "test")}},
        "leakage": leak,
        "confounds": {},
    }
    warnings += leak_warnings
    for column in CONFOUND_COLUMNS:
        if column in table.meta_columns:
            values = table.meta_values[:, table.meta_columns.index(column)].tolist()
            cross, column_warnings = confounds(table.labels, values, column)
            report["confounds"][column] = {"table": cross, "warnings": column_warnings}
            warnings += column_warnings
    report["warnings"] = warnings
    return report


def _table(title: str, rows: dict[str, dict[str, int]], columns: list[str] | None = None) -> Table:
    columns = columns or sorted({v for row in rows.values() for v in row})
    t = Table(title=escape(title))
    for name in ["class", *columns]:
        t.add_column(escape(name))
    for label, row in sorted(rows.items()):
        t.add_row(escape(label), *[str(row.get(c, 0)) for c in columns])
    return t


def print_report(report: dict[str, Any]) -> None:
    """Human-readable inspect report (Rich tables; warnings last, in red). Lines naming files are not wrapped,
    so that a path can be copied from the terminal."""
    console.print(f"[bold]{escape(report['root'])}[/] layout={report['layout']}: {report['n_usable']} usable of "
                  f"{report['n_files']} files, {report['patients']} patient groups "
                  f"({report['images_without_patient_id']} images without patient id)", soft_wrap=True)
    console.print(_table("usable images", {c: {"images": n} for c, n in report["classes"].items()}))
    console.print(escape(f"modes: {report['modes']}; sizes: {report['sizes']}"))
    for s in report["skipped"][:MAX_LISTED]:
        console.print(escape(f"  skipped {s['path']}: {s['reason']}"), soft_wrap=True)
    dup = report["duplicates"]
    console.print(f"duplicates: {dup['exact_pairs']} exact pair(s), {dup['near_pairs']} near pair(s) "
                  f"(pHash distance <= {dup['max_distance']}, thumbnail correlation >= {NEAR_CORR})")
    by_class: dict[str, dict[str, int]] = {}
    for split, counts in report["split"]["counts"].items():
        for label, n in counts.items():
            by_class.setdefault(label, {})[split] = n
    console.print(_table(f"split ({report['split']['source']})", by_class, ["train", "val", "test"]))
    for column, entry in report["confounds"].items():
        console.print(_table(f"class x {column}", entry["table"]))
    for w in report["warnings"]:
        console.print(f"[bold red]WARNING[/] {escape(w)}", soft_wrap=True)
