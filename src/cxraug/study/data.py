"""The data of a study, loaded once by the driver: every image size the study needs, one patient-level split,
every regime x subset draw, the external test set, and a fingerprint of it all.

Every size is preprocessed from the source files (through the data cache), never resized from another size,
and the split is checked to be the same at every size. A regime asking for more images than the training
fold has is rejected here, before any unit runs, with the numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxraug import faults
from cxraug.data.audit import confounds, leakage, near_pairs
from cxraug.data.imageset import ImageSet, Splits
from cxraug.data.load import image_meta_column, load_imageset
from cxraug.data.names import match_class
from cxraug.data.preprocess import PreprocessConfig
from cxraug.data.splits import apply_regime, split_patients
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.study.protocol import Protocol


@dataclass
class StudyData:
    """Everything the units need, by image size."""

    classes: list[str]
    splits: dict[int, Splits]
    test: dict[int, ImageSet]
    subsets: dict[tuple[str, int, int], ImageSet]  # (regime, draw, size) -> training subset
    fingerprint: str
    test_fingerprint: str | None
    source: str  # "phantom" or the data root
    skipped: list[dict[str, str]] = field(default_factory=list)
    test_source: str | None = None

    def fingerprints(self, sizes: set[int]) -> tuple[str, str | None]:
        """(data, external test) fingerprint of the images at ``sizes`` only: a unit's key names what the unit
        reads, so adding an arm at another image size leaves the other units' keys alone. Over every size of the
        study this is :attr:`fingerprint`."""
        order = sorted(sizes)
        fp = _fingerprint(*(self.splits[s].train for s in order), *(self.splits[s].val for s in order),
                          *(self.splits[s].test for s in order))
        test = _fingerprint(*(self.test[s] for s in order)) if self.test_source is not None else None
        return fp, test

    def counts(self, size: int) -> dict[tuple[str, int], dict[str, int]]:
        return {(r, d): s.counts() for (r, d, sz), s in self.subsets.items() if sz == size}

    def describe(self) -> dict[str, Any]:
        any_size = next(iter(self.splits))
        sp = self.splits[any_size]
        return {"data": "phantom" if self.source == "phantom" else self.source, "classes": self.classes,
                "fingerprint": self.fingerprint, "test_data": self.test_source, "test_fingerprint":
                self.test_fingerprint, "train": sp.train.counts(), "val": sp.val.counts(),
                "test": self.test[any_size].counts(), "skipped": len(self.skipped),
                "patients": {k: int(len(set(getattr(sp, k).patient_ids.astype(str)))) for k in ("train", "val")},
                "regimes": {f"{r} draw {d}": s.counts() for (r, d, sz), s in self.subsets.items()
                            if sz == any_size}}


def audit_warnings(splits: Splits, columns: list[str]) -> list[str]:
    """Data-audit lines for the study outputs: duplicates crossing train/val/test, metadata shortcuts."""
    every = splits.train.concat(splits.val).concat(splits.test)
    names = np.array(["train"] * len(splits.train) + ["val"] * len(splits.val) + ["test"] * len(splits.test))
    _, warnings = leakage(names, every.patient_ids, near_pairs(every.images), every.paths)
    labels = [every.classes[i] for i in every.labels]
    for column in columns:
        values = image_meta_column(every, column)
        if any(values):
            warnings += confounds(labels, [str(v) for v in values], column)[1]
    return warnings


def _fingerprint(*sets: ImageSet) -> str:
    h = hashlib.sha256()
    for s in sets:
        h.update(np.ascontiguousarray(s.images).tobytes())
        h.update(s.labels.tobytes())
        h.update("\n".join(s.classes).encode())
        h.update("\n".join(s.paths).encode())
        h.update("\n".join(map(str, s.patient_ids)).encode())
    return h.hexdigest()[:16]


def _filter(imageset: ImageSet, where: dict[str, list[str]]) -> ImageSet:
    keep = np.ones(len(imageset), dtype=bool)
    for column, allowed in where.items():
        values = image_meta_column(imageset, column)
        if not any(values):
            raise CxraugError(f"data.where.{column}: the dataset has no per-image column {column!r} "
                              "(it comes from metadata.csv or manifest columns)")
        keep &= np.isin(values.astype(str), [str(a) for a in allowed])
    out = imageset.subset(keep)
    empty = [c for c, n in out.counts().items() if n == 0]
    if empty:
        raise CxraugError(f"data.where {where} leaves no image of class(es) {', '.join(empty)}")
    return out


def _load(root: str | None, proto: Protocol, size: int, classes: list[str] | None) -> tuple[ImageSet, list]:
    pre = PreprocessConfig(**{**proto.preprocess, "size": size})
    try:
        imageset, skipped = load_imageset(root, layout=proto.data.layout, preprocess=pre, classes=classes,
                                          merge=proto.data.merge or None, cache_dir=proto.data.cache_dir)
    except CxraugError as exc:
        raise CxraugError(f"data (root / --data, layout, classes, merge, cache_dir): {exc}") from None
    if proto.data.where:
        imageset = _filter(imageset, proto.data.where)
    return imageset, skipped


def _external_test(root: str, proto: Protocol, size: int, classes: list[str]) -> ImageSet:
    """The external test set at ``size``, its classes mapped by name onto the study's (others dropped)."""
    ext, _ = _load(root, proto, size, None)
    mapping = {}
    for i, name in enumerate(ext.classes):
        try:
            mapping[i] = match_class(name, classes)
        except CxraugError:
            continue
    if not mapping:
        raise CxraugError(f"--test-data {root}: none of its classes ({', '.join(ext.classes)}) matches the "
                          f"study's ({', '.join(classes)})")
    keep = np.isin(ext.labels, list(mapping))
    sub = ext.subset(keep)
    return ImageSet(images=sub.images, labels=np.array([mapping[int(v)] for v in sub.labels]), classes=list(classes),
                    patient_ids=sub.patient_ids, paths=sub.paths, meta=sub.meta)


def sizes_needed(proto: Protocol) -> tuple[int, list[int], list[int]]:
    """(data size, generator sizes, classifier sizes)."""
    data_size = PreprocessConfig(**proto.preprocess).size
    gens = sorted({GENERATORS.get(g.model).Config(**g.config).size for g in proto.generators.values()})
    clfs = sorted({c.size or data_size for c in proto.classifiers})
    return data_size, gens, clfs


def _same_split(imageset: ImageSet, reference: Splits, size: int) -> Splits:
    """``imageset`` (another size of the same files) split exactly as ``reference``, image for image."""
    parts = []
    index = {p: i for i, p in enumerate(imageset.paths)}
    for ref in (reference.train, reference.val, reference.test):
        missing = [p for p in ref.paths if p not in index]
        if missing:
            raise CxraugError(f"{len(missing)} image(s) usable at {reference.train.size} px are not at {size} px "
                              f"(e.g. {missing[0]})")
        parts.append(imageset.subset([index[p] for p in ref.paths]))
    return Splits(*parts)


def check_class_names(proto: Protocol, classes: list[str]) -> None:
    """Every class the protocol names (regime caps, generator classes and sources, arm policies) is one of the
    data's, else one message with its field path."""
    named = [(f"regimes[{i}].cap.{c}", c) for i, r in enumerate(proto.regimes) for c in r.cap]
    for g, spec in proto.generators.items():
        named += [(f"generators.{g}.classes[{j}]", c) for j, c in enumerate(spec.classes or [])]
        named += [(f"generators.{g}.source", spec.source)] if spec.source else []
    named += [(f"arms[{i}].policy.classes[{j}]", c) for i, a in enumerate(proto.arms) if a.policy
              for j, c in enumerate(a.policy.classes or [])]
    for field, name in named:
        try:
            match_class(name, classes)
        except CxraugError as exc:
            raise CxraugError(f"{field}: {exc}") from None


def check_regime(train: ImageSet, regime: Any, split: Splits, index: int = 0) -> None:
    """Reject a regime (``regimes[index]``) that asks for more images of a class than the training fold has, with
    the numbers."""
    counts = train.counts()
    asked = {c: regime.n_per_class for c in counts} if regime.n_per_class is not None else {}
    for name, n in regime.cap.items():
        asked[train.classes[match_class(name, train.classes)]] = n
    short = {c: (n, counts[c]) for c, n in asked.items() if n > counts[c]}
    if short:
        val, test = split.val.counts(), split.test.counts()
        detail = "; ".join(f"{c}: asks {n}, the training fold has {have} (val {val[c]}, test {test[c]}, "
                           f"all {have + val[c] + test[c]})" for c, (n, have) in short.items())
        field = "n_per_class" if regime.n_per_class is not None else "cap"
        raise CxraugError(f"regime {regime.name!r} (regimes[{index}].{field}) asks for more images than the data "
                          f"has: {detail}. "
                          "Lower the regime, add data, or shrink split.val_frac/test_frac")


def load_study_data(proto: Protocol, data_root: str | None, test_root: str | None) -> StudyData:
    """Load, split and thin the data at every size the study needs; reject impossible regimes."""
    data_size, gen_sizes, clf_sizes = sizes_needed(proto)
    sizes = sorted({data_size, *gen_sizes, *clf_sizes})
    root = data_root if data_root is not None else proto.data.root
    splits: dict[int, Splits] = {}
    imageset, skipped = _load(root, proto, data_size, proto.data.classes)
    faults.point("data")
    sp = proto.split
    splits[data_size] = split_patients(imageset, sp.val_frac, sp.test_frac, sp.seed, near_duplicates=sp.near_duplicates)
    for size in sizes:
        if size != data_size:
            splits[size] = _same_split(_load(root, proto, size, proto.data.classes)[0], splits[data_size], size)
            faults.point("data")
    first = splits[data_size]
    classes = list(first.train.classes)
    check_class_names(proto, classes)
    subsets: dict[tuple[str, int, int], ImageSet] = {}
    for i, regime in enumerate(proto.regimes):
        check_regime(first.train, regime, first, i)
        for draw in range(proto.repeats.subset_draws):
            for size in sizes:
                subsets[(regime.name, draw, size)] = apply_regime(
                    splits[size].train, regime.n_per_class, regime.cap or None, seed=draw)
                faults.point("data")
    test: dict[int, ImageSet] = {}
    test_fp = None
    if test_root is not None:
        for size in sizes:
            test[size] = _external_test(test_root, proto, size, classes)
        test_fp = _fingerprint(*(test[s] for s in sizes))
    else:
        test = {s: splits[s].test for s in sizes}
    fp = _fingerprint(*(splits[s].train for s in sizes), *(splits[s].val for s in sizes),
                      *(splits[s].test for s in sizes))
    source = "phantom" if first.train.meta.get("data") == "phantom" else str(root)
    return StudyData(classes=classes, splits=splits, test=test, subsets=subsets, fingerprint=fp,
                     test_fingerprint=test_fp, source=source, skipped=skipped, test_source=test_root)
