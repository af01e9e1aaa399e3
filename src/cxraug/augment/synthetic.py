"""The generative-augmentation plug-in: trained generators -> extra, marked images in the *training* fold only.

Generators of every kind plug in the same way:

* one unconditional generator per class - ``{"COVID": dcgan_covid, "Normal": dcgan_normal}``;
* one conditional generator - ``acgan`` (every class it knows that the training set also has);
* a translation generator with its source images - ``SyntheticSource(pix2pix, "COVID", source=normal_images)``,
  or the bare generator when it names its ``target_class`` and picks its ``source_images(train)`` (Pix2Pix
  translates the training fold's real source-class images). Sources are cycled when more outputs are needed.

A :class:`SyntheticPolicy` says how many images each class gets: ``add`` N per class, ``balance`` every class up
to the largest class's real count, or ``ratio`` synthetic:real per class.

**Space rule.** Generators emit uint8 images in the preprocessed space they were trained in; the classifier's
training set lives in the same preprocessing at its own size S. Synthetic images are therefore never
re-preprocessed (no second crop/CLAHE); they are only resized from the generator's size to S by one rule,
:func:`cxraug.data.resize.resize_uint8`: bilinear interpolation with antialiasing (``torch.nn.functional.interpolate``,
``align_corners=False``, ``antialias=True``) on intensities 0..255, rounded and clipped to uint8 - the rule the
metrics package uses before its feature extractors. Translation
sources go the other way (S -> generator size) by the same rule. A generator whose recorded preprocessing differs
from the training set's (other than size) is refused.

Synthetic images are marked (``ImageSet.synthetic``), have paths and patient ids ``synthetic:<model>:<class>:<k>``
and are only ever concatenated onto a training set: :func:`augment_splits` returns validation and test unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cxraug.data.imageset import ImageSet, Splits
from cxraug.data.names import match_class, normalize
from cxraug.data.resize import resize_uint8
from cxraug.errors import CxraugError

#: the ``kind`` values of :class:`Sampler` (``cxraug.generators.base.GeneratorKind`` is a ``str`` enum of them)
UNCONDITIONAL, CONDITIONAL, TRANSLATION = "unconditional", "conditional", "translation"


@runtime_checkable
class Sampler(Protocol):
    """What the plug-in needs of a trained generator (``cxraug.generators.base.Generator`` provides it; the
    plug-in sits below the generators layer and never imports it)."""

    name: str
    kind: str
    classes: list[str]
    preprocess: dict[str, Any]
    config: Any  # has ``size``: the generator's image size
    #: a translation model that picks its own inputs: the class it produces (None: pass its inputs, or not one)
    target_class: str | None

    def source_images(self, train: ImageSet) -> np.ndarray | None:
        """A translation model's inputs from a training fold (None where ``target_class`` is None)."""
        ...

    def sample(self, n: int, label: Any = None, source: np.ndarray | None = None,
               seed: int | None = None) -> np.ndarray: ...


class CurationFilter(BaseModel):
    """Which synthetic images an arm keeps (the ``filter`` block of a policy; applied by
    :mod:`cxraug.metrics.curation` with a judge trained on the real training subset only).

    ``confidence``: keep an image when the judge's probability of its intended class is >= tau. ``realism``:
    keep it when its judge features fall inside the k-NN ball of at least one real training image of its class
    (Kynkaanniemi et al. 2019). ``diversity``: when more candidates pass than are needed, choose the kept set
    greedily for coverage of the real class (k-center), not the first N. Candidates are drawn in chunks until the
    count is met (``diversity``: ``diversity_pool`` x the count must pass first) or ``max_draw`` x the count
    have been drawn.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    confidence: float | None = Field(None, gt=0, le=1, description="judge probability threshold tau")
    realism: int | None = Field(None, ge=1, le=50, description="k of the k-NN manifold test")
    diversity: bool = Field(False, description="k-center selection among the passing candidates")
    max_draw: float = Field(4.0, ge=1, le=50, description="most candidates drawn, x the images needed")
    diversity_pool: float = Field(2.0, ge=1, le=20, description="with diversity: passing candidates to choose "
                                  "from, x the images needed")
    judge_epochs: int | None = Field(None, ge=1, le=1000, description="the judge's training passes; null = the "
                                     "study's domain-encoder settings (metrics.encoder)")

    @model_validator(mode="after")
    def _something(self) -> "CurationFilter":
        if self.confidence is None and self.realism is None and not self.diversity:
            raise ValueError("a filter needs at least one of confidence, realism, diversity")
        return self

    @property
    def key(self) -> str:
        """A short stable name of this filter (the curated pool's name in a generator unit)."""
        blob = json.dumps(self.model_dump(), sort_keys=True)
        return "f" + hashlib.sha256(blob.encode()).hexdigest()[:10]


class SyntheticPolicy(BaseModel):
    """How many synthetic (or, for oversampling, repeated real) images each class gets - the protocol's
    ``arms[].policy`` block and the plug-in's argument alike.

    ``add``: ``n_per_class`` more images of each listed class. ``balance``: every class up to the largest
    class's real count. ``ratio``: ``ratio`` x the class's real count more images. ``edit``: every real training
    image of the listed classes gets ``per_image`` edits by a diffusion model (SDEdit, :mod:`cxraug.augment.edits`)
    at ``strength`` (one value, or ``[s_min, s_max]`` drawn per edit), labelled with its class - or, with
    ``target``, the images of the other listed classes are edited towards ``target`` and labelled so.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["add", "balance", "ratio", "edit"]
    n_per_class: int | None = Field(None, ge=1, description="images per class (mode add)")
    ratio: float | None = Field(None, gt=0, description="synthetic images per real image of the class (mode ratio)")
    classes: list[str] | None = Field(None, description="classes that receive images; null = all (with a "
                                      "generator)")
    filter: CurationFilter | None = Field(None, description="curation of the generated images (generator arms)")
    per_image: int | None = Field(None, ge=1, le=100, description="edits per real training image (mode edit)")
    strength: float | list[float] | None = Field(None, description="edit strength s in (0, 1], or [s_min, s_max] "
                                                 "drawn uniformly per edit (mode edit)")
    steps: int | None = Field(None, ge=1, description="DDIM steps of an edit chain; null = the model's "
                              "sample_steps (mode edit)")
    guidance: float | None = Field(None, ge=0, description="classifier-free guidance of edits; null = the "
                                   "model's guidance_scale (mode edit)")
    target: str | None = Field(None, description="mode edit: edit the other classes' images towards this class")

    @model_validator(mode="after")
    def _needs(self) -> "SyntheticPolicy":
        if self.mode == "add" and self.n_per_class is None:
            raise ValueError("mode 'add' needs n_per_class")
        if self.mode == "ratio" and self.ratio is None:
            raise ValueError("mode 'ratio' needs ratio")
        edit_fields = [k for k in ("per_image", "strength", "steps", "guidance", "target")
                       if getattr(self, k) is not None]
        if self.mode != "edit" and edit_fields:
            raise ValueError(f"{', '.join(edit_fields)} only apply to mode 'edit'")
        if self.mode == "edit":
            if self.per_image is None or self.strength is None:
                raise ValueError("mode 'edit' needs per_image and strength")
            lo, hi = self.strength_range
            if not (0 < lo <= hi <= 1) or (isinstance(self.strength, list) and len(self.strength) != 2):
                raise ValueError(f"strength must be s or [s_min, s_max] with 0 < s_min <= s_max <= 1, got "
                                 f"{self.strength}")
        return self

    @property
    def strength_range(self) -> tuple[float, float]:
        """``(s_min, s_max)`` of mode edit (equal for one strength)."""
        s = self.strength
        if isinstance(s, list):
            return (float(s[0]), float(s[-1])) if s else (0.0, 0.0)
        return (float(s or 0.0), float(s or 0.0))

    @property
    def key(self) -> str:
        """A short stable name of this policy (an edit pool's name in a generator unit)."""
        blob = json.dumps(self.model_dump(), sort_keys=True)
        return "e" + hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class SyntheticSource:
    """One generator producing images of class ``label`` (``source``: uint8 inputs of a translation model)."""

    generator: Sampler
    label: str
    source: np.ndarray | None = None


GeneratorsArg = Sampler | Mapping[str, Sampler] | Sequence[SyntheticSource]


def resolve_sources(train: ImageSet, generators: GeneratorsArg) -> list[SyntheticSource]:
    """Normalise the ways generators can be given into one :class:`SyntheticSource` per covered class."""
    if isinstance(generators, Sampler):
        gen = generators
        if gen.kind == CONDITIONAL:
            known = {normalize(c) for c in gen.classes}
            names = [c for c in train.classes if normalize(c) in known]
            if not names:
                raise CxraugError(f"{gen.name} knows classes {gen.classes}, none of the training set's "
                                  f"{train.classes}")
            return [SyntheticSource(gen, c) for c in names]
        if gen.kind == TRANSLATION:
            target = gen.target_class
            source = gen.source_images(train) if target is not None else None
            if target is None or source is None:
                raise CxraugError(f"{gen.name} translates images: pass SyntheticSource(generator, label, source=...)")
            label = train.classes[match_class(target, train.classes)]
            return [SyntheticSource(gen, label, source=source)]
        return [SyntheticSource(gen, train.classes[match_class(gen.classes[0], train.classes)])]
    if isinstance(generators, Mapping):
        return [SyntheticSource(g, train.classes[match_class(k, train.classes)]) for k, g in generators.items()]
    return [dataclasses.replace(s, label=train.classes[match_class(s.label, train.classes)]) for s in generators]


def policy_counts(policy: SyntheticPolicy, real: Mapping[str, int], covered: Sequence[str]) -> dict[str, int]:
    """Images to add per class name, from the *real* images per class (every class, in class order); only
    ``covered`` classes (those with a generator) may receive any."""
    classes = list(real)
    wanted = list(covered) if policy.classes is None else [classes[match_class(c, classes)] for c in policy.classes]
    missing = [c for c in wanted if c not in covered]
    if missing:
        raise CxraugError(f"policy asks for synthetic {missing} but no generator covers them (covered: {covered})")
    largest = max(real.values(), default=0)
    out = {}
    if policy.mode == "edit":
        return edit_counts(policy, real, wanted)
    for c in wanted:
        k = int(real[c])
        if policy.mode == "add":
            out[c] = int(policy.n_per_class or 0)
        elif policy.mode == "balance":
            out[c] = max(0, largest - k)
        else:
            out[c] = int(round(float(policy.ratio or 0.0) * k))
    return out


def edit_counts(policy: SyntheticPolicy, real: Mapping[str, int], wanted: Sequence[str]) -> dict[str, int]:
    """Edits per *label* class of mode edit: ``per_image`` x the class's real images, or, with ``target``, all
    edits of the other ``wanted`` classes' images under the target's name."""
    m = int(policy.per_image or 0)
    if policy.target is None:
        return {c: m * int(real[c]) for c in wanted}
    classes = list(real)
    target = classes[match_class(policy.target, classes)]
    return {target: m * sum(int(real[c]) for c in wanted if c != target)}


def real_counts(train: ImageSet) -> dict[str, int]:
    """Real (not synthetic) images per class, every class in class order."""
    real = np.bincount(train.labels[~train.synthetic], minlength=len(train.classes))
    return {c: int(n) for c, n in zip(train.classes, real)}


def synthetic_counts(train: ImageSet, policy: SyntheticPolicy, covered: Sequence[str]) -> dict[str, int]:
    """Synthetic images to add per class name of ``train`` (covered classes only; based on *real* images)."""
    return policy_counts(policy, real_counts(train), covered)


def check_space(gen: Sampler, train: ImageSet) -> None:
    theirs = {k: v for k, v in gen.preprocess.items() if k != "size"}
    ours = {k: v for k, v in dict(train.meta.get("preprocess") or {}).items() if k != "size"}
    diff = sorted(k for k in set(theirs) & set(ours) if theirs[k] != ours[k])
    if diff:
        raise CxraugError(f"{gen.name} was trained on images preprocessed differently from the training set "
                          f"({', '.join(f'{k}: {theirs[k]} vs {ours[k]}' for k in diff)}); synthetic images must "
                          f"come from the classifier's preprocessed space")


def class_seed(seed: int, label_index: int) -> int:
    """Independent sampling seed per (run seed, class)."""
    return int(np.random.SeedSequence([int(seed), int(label_index)]).generate_state(1)[0])


def empty_synthetic(train: ImageSet) -> ImageSet:
    """No synthetic images, in ``train``'s space and class list."""
    return ImageSet(np.zeros((0, train.size, train.size), np.uint8), np.zeros(0), list(train.classes),
                    meta=dict(train.meta))


def generate_synthetic(train: ImageSet, generators: GeneratorsArg, policy: SyntheticPolicy,
                       seed: int = 0) -> ImageSet:
    """Only the synthetic images the policy asks for, in ``train``'s space and class list, marked synthetic."""
    srcs = resolve_sources(train, generators)
    by_class = {s.label: s for s in srcs}
    parts = []
    for label, n in synthetic_counts(train, policy, list(by_class)).items():
        if n == 0:
            continue
        s = by_class[label]
        gen = s.generator
        check_space(gen, train)
        li = train.classes.index(label)
        source = None
        if gen.kind == TRANSLATION:
            if s.source is None or len(s.source) == 0:
                raise CxraugError(f"{gen.name} ({label}) is a translation model and needs source images")
            source = resize_uint8(np.asarray(s.source)[np.arange(n) % len(s.source)], gen.config.size)
        imgs = gen.sample(n, label=label if gen.kind == CONDITIONAL else None, source=source,
                          seed=class_seed(seed, li))
        names = [f"synthetic:{gen.name}:{label}:{k}" for k in range(n)]
        parts.append(ImageSet(images=resize_uint8(imgs, train.size), labels=np.full(n, li), classes=train.classes,
                              patient_ids=np.asarray(names, dtype=object), paths=names,
                              synthetic=np.ones(n, dtype=bool), meta=dict(train.meta)))
    out = empty_synthetic(train)
    for p in parts:
        out = out.concat(p)
    return out


def augment_training_set(train: ImageSet, generators: GeneratorsArg, policy: SyntheticPolicy,
                         seed: int = 0) -> ImageSet:
    """``train`` plus the synthetic images of :func:`generate_synthetic` (real images first, unchanged)."""
    return train.concat(generate_synthetic(train, generators, policy, seed))


def augment_splits(splits: Splits, generators: GeneratorsArg, policy: SyntheticPolicy, seed: int = 0) -> Splits:
    """Splits whose training fold is augmented; validation and test are returned untouched."""
    return dataclasses.replace(splits, train=augment_training_set(splits.train, generators, policy, seed))
