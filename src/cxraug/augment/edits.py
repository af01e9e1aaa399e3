"""Edits of real training images by a diffusion model (policy ``mode: edit``; SDEdit, Meng et al. 2022).

Every *real* image of the training fold in the policy's classes (the generator's classes when the policy names
none) gets ``per_image`` edits; an edit is labelled with its source's class, or with ``policy.target`` (then the
target's own images are not edited). Strengths are drawn per edit from ``[s_min, s_max]`` by a generator seeded
with the run seed. Only images passed as ``train`` are ever read: validation and test never reach this module.
Edits are marked synthetic like samples; the record keeps, per label class, the source classes, how many
sources and edits, every edit's strength and its source's path.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from cxraug.augment.synthetic import CONDITIONAL, Sampler, SyntheticPolicy, check_space, class_seed, empty_synthetic
from cxraug.data.imageset import ImageSet
from cxraug.data.names import match_class, normalize
from cxraug.data.resize import resize_uint8
from cxraug.errors import CxraugError


@runtime_checkable
class Editor(Sampler, Protocol):
    """A conditional generator that edits real images (``cxraug.generators.ddpm.DDPM``)."""

    def edit(self, images: np.ndarray, labels: Any, strength: Any, steps: int | None = None,
             guidance: float | None = None, seed: int = 0) -> np.ndarray: ...


def can_edit(model: Any) -> bool:
    """Whether a generator (class or instance) edits real images: conditional, with an ``edit`` method."""
    return getattr(model, "kind", None) == CONDITIONAL and callable(getattr(model, "edit", None))


def _strength_seed(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0xED17]))


def edit_pairs(train: ImageSet, editor: Any, policy: SyntheticPolicy) -> list[tuple[str, str, np.ndarray]]:
    """(source class, label class, indices of its real training images) for every class the policy edits."""
    if policy.mode != "edit":
        raise CxraugError(f"generate_edits needs a policy of mode 'edit', got {policy.mode!r}")
    if not can_edit(editor):
        raise CxraugError(f"{getattr(editor, 'name', editor)!r} cannot edit images: mode 'edit' needs a "
                          "conditional diffusion model (ddpm)")
    check_space(editor, train)
    known = {normalize(c) for c in editor.classes}
    names = policy.classes or [c for c in train.classes if normalize(c) in known]
    wanted = [train.classes[match_class(c, train.classes)] for c in names]
    target = train.classes[match_class(policy.target, train.classes)] if policy.target else None
    if target is not None and normalize(target) not in known:
        raise CxraugError(f"edit target {target!r} is not a class of {editor.name} ({editor.classes})")
    real = np.flatnonzero(~train.synthetic)
    return [(c, target or c, real[train.labels[real] == train.classes.index(c)]) for c in wanted if c != target]


def edit_images(train: ImageSet, editor: Any, policy: SyntheticPolicy, src: np.ndarray, label: str,
                strengths: np.ndarray, seed: int) -> ImageSet:
    """Edits of the training images ``src`` towards ``label`` at ``strengths`` (:func:`edit_set`)."""
    images = editor.edit(train.images[src], label, strengths, steps=policy.steps, guidance=policy.guidance, seed=seed)
    return edit_set(train, policy, images, src, label)


def edit_set(train: ImageSet, policy: SyntheticPolicy, images: np.ndarray, src: np.ndarray, label: str) -> ImageSet:
    """Edited ``images`` of the training images ``src``, labelled ``label``, in ``train``'s space, marked synthetic
    (paths ``synthetic:edit:<policy key>:<source class>-><label>:<k>``)."""
    li = train.classes.index(label)
    paths = [f"synthetic:edit:{policy.key}:{train.classes[train.labels[i]]}->{label}:{k}" for k, i in enumerate(src)]
    return ImageSet(images=resize_uint8(images, train.size), labels=np.full(len(src), li), classes=train.classes,
                    patient_ids=np.asarray(paths, dtype=object), paths=paths, synthetic=np.ones(len(src), dtype=bool),
                    meta=dict(train.meta))


def add_record(record: dict[str, Any], train: ImageSet, policy: SyntheticPolicy, c: str, label: str, sources: int,
               src: np.ndarray, strengths: np.ndarray) -> dict[str, Any]:
    """Add the edits of source class ``c`` (``src``: the edited images, one entry per edit) to ``record[label]``."""
    rec = record.setdefault(label, {"source_classes": [], "sources": 0, "edits": 0, "strengths": [],
                                    "source_paths": [], "target": policy.target and label})
    rec["source_classes"].append(c)
    rec["sources"] += sources
    rec["edits"] += len(src)
    rec["strengths"] += [float(s) for s in strengths]
    rec["source_paths"] += [str(train.paths[i]) for i in src]
    return rec


def generate_edits(train: ImageSet, editor: Any, policy: SyntheticPolicy,
                   seed: int = 0) -> tuple[ImageSet, dict[str, Any]]:
    """The edits the policy asks for, in ``train``'s space and class list, marked synthetic, and their record."""
    lo, hi = policy.strength_range
    rng = _strength_seed(seed)
    out = empty_synthetic(train)
    record: dict[str, Any] = {}
    for c, label, members in edit_pairs(train, editor, policy):
        src = np.repeat(members, int(policy.per_image or 0))
        strengths = rng.uniform(lo, hi, len(src)) if hi > lo else np.full(len(src), lo)
        if len(src) == 0:
            continue
        out = out.concat(edit_images(train, editor, policy, src, label, strengths,
                                     class_seed(seed, train.classes.index(c))))
        add_record(record, train, policy, c, label, len(members), src, strengths)
    return out, record
