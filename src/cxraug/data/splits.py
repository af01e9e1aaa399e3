"""Patient-level train/val/test splits and small-data training regimes.

Splits are stratified by each patient group's majority class: within a class, groups are shuffled
with a fixed seed and dealt whole to test, then val, until each holds its fraction of that class's
images (each gets at least one group when the class has three or more). No patient is ever in two
splits. A manifest ``split`` column (``imageset.meta["split"]``) is used as given instead.

Regimes thin the *training* split only. Each image gets a fixed rank from a hash of (seed, path); a
class keeps its lowest-ranked images, so draws are nested (the 50-per-class set is a subset of the
200-per-class set of the same seed) and do not depend on image order.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cxraug.data.imageset import ImageSet, Splits
from cxraug.data.names import match_class
from cxraug.errors import CxraugError

SPLITS = ("train", "val", "test")


def group_labels(labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique group names sorted, index of each image's group, majority label of each group)."""
    names, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_labels = int(labels.max()) + 1 if len(labels) else 1
    votes = np.zeros((len(names), n_labels), dtype=np.int64)
    np.add.at(votes, (inverse, labels), 1)
    return names, inverse, votes.argmax(axis=1)


def assign_splits(labels: np.ndarray, groups: np.ndarray, val_frac: float, test_frac: float,
                  seed: int) -> np.ndarray:
    """Split name ("train"/"val"/"test") of each image; every group lands whole in one split."""
    if not (0.0 <= val_frac < 1.0 and 0.0 <= test_frac < 1.0 and val_frac + test_frac < 1.0):
        raise CxraugError(f"val_frac={val_frac} and test_frac={test_frac} must be >= 0 and sum to < 1")
    labels = np.asarray(labels, dtype=np.int64)
    names, inverse, majority = group_labels(labels, groups)
    sizes = np.bincount(inverse, minlength=len(names))
    group_split = np.zeros(len(names), dtype=np.int64)  # 0 train, 1 val, 2 test
    for c in np.unique(majority):
        members = np.flatnonzero(majority == c)
        members = members[np.random.default_rng([seed, int(c)]).permutation(len(members))]
        targets = {2: test_frac * sizes[members].sum(), 1: val_frac * sizes[members].sum()}
        filled = {2: 0, 1: 0}
        for k, g in enumerate(members):
            forced = 2 if k == 0 else 1 if k == 1 else None
            if len(members) >= 3 and forced is not None and targets[forced] > 0:
                chosen = forced
            else:
                chosen = next((s for s in (2, 1) if filled[s] + sizes[g] / 2 <= targets[s]), 0)
            group_split[g] = chosen
            if chosen:
                filled[chosen] += sizes[g]
    return np.array(["train", "val", "test"], dtype=object)[group_split[inverse]]


def _manifest_splits(imageset: ImageSet) -> np.ndarray:
    given = imageset.meta["split"]
    missing = [p for p in imageset.paths if p not in given]
    if missing:
        raise CxraugError(f"the manifest gives a split for some images but not for {len(missing)}, "
                          f"e.g. {missing[0]}")
    names = np.array([given[p] for p in imageset.paths], dtype=object)
    seen: dict[str, str] = {}
    for pid, split in zip(imageset.patient_ids.astype(str).tolist(), names):
        if seen.setdefault(pid, split) != split:
            raise CxraugError(f"the manifest puts patient {pid!r} in more than one split: "
                              f"{sorted({seen[pid], split})}")
    return names


def split_patients(imageset: ImageSet, val_frac: float = 0.15, test_frac: float = 0.15, seed: int = 0,
                   near_duplicates: bool = False, use_manifest: bool = True) -> Splits:
    """Patient-level stratified train/val/test split (the manifest's split column when present).

    ``near_duplicates=True`` first merges patient groups that hold near-duplicate images
    (:func:`cxraug.data.audit.near_duplicate_groups`), for data with missing patient ids.
    """
    if use_manifest and imageset.meta.get("split"):
        names = _manifest_splits(imageset)
    else:
        groups = imageset.patient_ids
        if near_duplicates:
            from cxraug.data.audit import near_duplicate_groups

            groups = near_duplicate_groups(imageset)
        names = assign_splits(imageset.labels, groups, val_frac, test_frac, seed)
    parts = [imageset.subset(names == s) for s in SPLITS]
    for part, s in zip(parts, SPLITS):
        part.meta["split_name"] = s
    return Splits(*parts)


def _rank(seed: int, path: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{path}".encode(), digest_size=8).digest(), "big")


def apply_regime(train: ImageSet, n_per_class: int | None = None, cap: dict[str, int] | None = None,
                 seed: int = 0) -> ImageSet:
    """Thin a training set: keep ``n_per_class`` images of every class and/or cap named classes
    (``{"COVID": 219}``). Nested across ``n`` for one seed. Asking more than a class has is an error."""
    caps = {match_class(name, train.classes): n for name, n in (cap or {}).items()}
    if min([n_per_class or 0, *caps.values()]) < 0:
        raise CxraugError(f"regime sizes must be >= 0 (n_per_class={n_per_class}, cap={cap})")
    keep = np.ones(len(train), dtype=bool)
    for i, name in enumerate(train.classes):
        members = np.flatnonzero(train.labels == i)
        if n_per_class is not None and n_per_class > len(members):
            raise CxraugError(f"n_per_class={n_per_class} but class {name!r} has only {len(members)} "
                              f"training images")
        limits = [n for n in (n_per_class, caps.get(i)) if n is not None]
        if limits:
            order = sorted(members, key=lambda j: (_rank(seed, train.paths[j]), j))
            keep[order[min(limits):]] = False
    out = train.subset(keep)
    out.meta["regime"] = {"n_per_class": n_per_class, "cap": dict(cap or {}), "seed": seed}
    return out


def load_splits(root: str | Path | None, val_frac: float = 0.15, test_frac: float = 0.15, seed: int = 0,
                near_duplicates: bool = False, **load_kwargs: object) -> Splits:
    """One call from a folder (None: phantom) to :class:`Splits`; ``load_kwargs`` go to
    :func:`cxraug.data.load.load_imageset` (layout, preprocess, classes, merge, cache_dir)."""
    from cxraug.data.load import load_imageset

    imageset, skipped = load_imageset(root, **load_kwargs)  # type: ignore[arg-type]
    splits = split_patients(imageset, val_frac, test_frac, seed, near_duplicates=near_duplicates)
    splits.skipped = skipped
    return splits
