"""Study protocols: a YAML file validated by Pydantic.

An invalid file stops with one message per problem, each naming the field path (``arms[2].policy.mode``) and
what was expected. Sub-configurations owned by other packages (preprocessing, generator and classifier
settings) are validated by those packages' own models and reported under the protocol path they sit at.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cxraug.augment import POLICIES
from cxraug.augment.edits import can_edit
from cxraug.augment.synthetic import SyntheticPolicy
from cxraug.classifiers import CLASSIFIERS, ClassifierConfig
from cxraug.data.preprocess import PreprocessConfig
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.metrics.features import EXTRACTORS


#: most repeats of one kind; the plan as a whole is capped at ``cxraug.study.plan.MAX_UNITS`` units
MAX_REPEATS = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(_Strict):
    """Where the images come from and which classes a study uses."""

    root: str | None = Field(None, description="dataset folder; null = the built-in phantom dataset")
    layout: str = "auto"
    classes: list[str] | None = Field(None, min_length=2, description="classes to keep (after merging, at least "
                                      "two); null = all")
    merge: dict[str, list[str]] = Field(default_factory=dict, description="new class -> old classes")
    where: dict[str, list[str]] = Field(
        default_factory=dict, description="keep images whose metadata column takes one of these values, "
        "e.g. {population: [adult]} (needs a metadata.csv with that column)")
    cache_dir: str | None = None


class SplitSpec(_Strict):
    """Patient-level split of the data into train / validation / test (test is replaced by --test-data)."""

    val_frac: float = Field(0.15, gt=0, lt=1)
    test_frac: float = Field(0.25, gt=0, lt=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    near_duplicates: bool = Field(False, description="near-duplicate images share a patient group (no leakage "
                                  "through re-uploaded copies across train/val/test); for real data, not phantoms")

    @model_validator(mode="after")
    def _fractions(self) -> "SplitSpec":
        if self.val_frac + self.test_frac >= 1:
            raise ValueError(f"val_frac + test_frac must be < 1 (got {self.val_frac} + {self.test_frac})")
        return self


class RegimeSpec(_Strict):
    """A training-set regime, applied to the training fold only.

    ``full``: the whole training fold. ``n_per_class``: N images of every class (nested across sizes within
    one subset draw). ``cap``: at most N images of the named classes, the others full. ``arms``: the arms
    trained on this regime (default every arm), e.g. a ``classical`` reference arm with more real images.
    """

    name: str
    n_per_class: int | None = Field(None, ge=1)
    cap: dict[str, int] = Field(default_factory=dict)
    arms: list[str] | None = Field(None, min_length=1, description="arms trained on this regime (null: every arm)")

    def trains(self, arm: str) -> bool:
        """Is the arm named ``arm`` trained on this regime?"""
        return self.arms is None or arm in self.arms

    @model_validator(mode="after")
    def _one_kind(self) -> "RegimeSpec":
        if self.n_per_class is not None and self.cap:
            raise ValueError("give either n_per_class or cap, not both")
        bad = {k: v for k, v in self.cap.items() if v < 1}
        if bad:
            raise ValueError(f"cap counts must be >= 1 (got {bad})")
        return self


class ArmSpec(_Strict):
    """One augmentation arm. Nothing set = the ``none`` baseline.

    ``generator`` names an entry of ``generators``; ``oversample: true`` repeats real images to the counts
    the policy gives (the fair baseline for a synthetic arm); ``classical`` names a classical policy
    (``fedoruk``, ``keras``, ``flip``) and combines with either.
    """

    name: str
    generator: str | None = None
    classical: str | None = None
    oversample: bool = False
    policy: SyntheticPolicy | None = None
    synthetic_weight: float = Field(1.0, ge=0, le=1, description="per-sample loss weight of synthetic images")
    synthetic_label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of synthetic images "
                                             "only (soft targets)")
    schedule: Literal["mixed", "pretrain-finetune"] = Field(
        "mixed", description="mixed: one training on real + synthetic; pretrain-finetune: stage 1 on real + "
        "synthetic, stage 2 from stage 1's best weights on real images only (both with validation checks)")
    finetune_fraction: float = Field(0.5, gt=0, lt=1, description="pretrain-finetune: share of the step budget "
                                     "given to stage 2 (the arm's total budget stays the regime's)")

    @model_validator(mode="after")
    def _consistent(self) -> "ArmSpec":
        if self.generator and self.oversample:
            raise ValueError("an arm either adds synthetic images (generator) or repeats real ones (oversample)")
        if (self.generator or self.oversample) and self.policy is None:
            raise ValueError("generator and oversample arms need a policy (add / balance / ratio)")
        if self.policy is not None and not (self.generator or self.oversample):
            raise ValueError("policy is only used with generator or oversample")
        if self.policy is not None and self.policy.filter is not None and not self.generator:
            raise ValueError("policy.filter curates generated images: it needs a generator")
        if self.schedule != "mixed" and not self.generator:
            raise ValueError("schedule pretrain-finetune needs synthetic images (a generator)")
        return self

    @property
    def role(self) -> str:
        """``none``, ``oversample``, ``classical`` (classical only) or ``generative``."""
        if self.generator:
            return "generative"
        if self.oversample:
            return "oversample"
        return "classical" if self.classical else "none"


class GeneratorSpec(_Strict):
    """A generator arm's model: registry name, its config (validated by the model) and sample settings."""

    model: str
    config: dict[str, Any] = Field(default_factory=dict, description="the model's Config fields (size, steps...)")
    classes: list[str] | None = Field(None, description="classes it is trained on; null = every class")
    checkpoint: Literal["best", "last"] = Field("best", description="best (by KID on validation) or last")
    source: str | None = Field(None, description="translation models: the class whose images are translated")
    drop_near_copies: bool = Field(False, description="near-copy gate: synthetic images the memorisation audit "
                                   "flags as near-copies of training images never reach a classifier")


class ClassifierSpec(_Strict):
    """A classifier: zoo name, head preset, input size and training settings (ClassifierConfig fields)."""

    name: str
    model: str
    head: str | None = None
    size: int | None = Field(None, ge=16, le=512, description="classifier image size; null = the data size")
    config: dict[str, Any] = Field(default_factory=dict)


class TrainingSpec(_Strict):
    """Settings shared by every arm, so arms differ only in their training images.

    Budgets are counted in optimiser steps on the *real* training subset of the regime, the same for every arm:
    a validation check every ``eval_every`` steps (default one pass over the real images, at least
    ``MIN_EVAL_STEPS``) and at most ``max_steps`` steps (default the classifier's ``epochs`` passes over the
    real images, at least ``MIN_BUDGET_STEPS``). An arm with 4x more images per pass gets no more steps and no
    more patience than ``none``.
    """

    loss_weighting: Literal["none", "balanced"] = Field(
        "balanced", description="balanced = inverse class frequency of the real training subset, same for all arms")
    equal_steps: bool = Field(True, description="true: every arm makes exactly max_steps optimiser steps and "
                              "restores its best validation check (equal budgets); false: every arm stops early "
                              "after `patience` checks without a better validation score (same patience in steps, "
                              "same cap; the step counts then differ per arm and the report says so)")
    max_steps: int | None = Field(None, ge=1, description="optimiser-step budget shared by every arm; null = "
                                  "derived from the classifier's epochs and the real training subset")
    eval_every: int | None = Field(None, ge=1, description="optimiser steps between validation checks, shared by "
                                   "every arm; null = one pass over the real training subset")
    add_baselines: bool = Field(True, description="add a classical arm and an oversample + classical arm at the "
                                "same image count for every generative arm that lacks them (the study says so)")


class RepeatSpec(_Strict):
    """Three independent sources of randomness, each with its own count."""

    classifier_seeds: int = Field(3, ge=1, le=MAX_REPEATS)
    subset_draws: int = Field(1, ge=1, le=MAX_REPEATS, description="draws of the training subset (nested across "
                              "sizes)")
    generator_seeds: int = Field(1, ge=1, le=MAX_REPEATS)


class MetricSpec(_Strict):
    """Image metrics per generator and the statistics settings."""

    image_metrics: bool = True
    features: str = Field("domain", description="feature extractor for KID/FID/PRDC (domain, inception, xrv)")
    encoder: dict[str, Any] = Field(default_factory=dict, description="domain encoder settings (EncoderConfig)")
    samples: int = Field(200, ge=10, description="synthetic images per class scored")
    nearest_k: int = Field(5, ge=1, description="k of the PRDC coverage")
    memorisation: bool = True
    bootstrap: int = Field(1000, ge=0, le=100_000, description="bootstrap resamples of the test images (0 = off)")
    subgroups: list[str] = Field(default_factory=lambda: ["population", "source_repo"])
    confidence: float = Field(0.95, gt=0, lt=1)


class ExecutionSpec(_Strict):
    """Resources of one unit (threads are set explicitly so every executor computes the same numbers)."""

    threads: int = Field(1, ge=1, le=1024, description="torch threads per unit")
    gpus: float = Field(0, ge=0, description="GPUs per unit (Ray)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")
    retries: int = Field(2, ge=0, description="Ray: re-runs of a unit whose worker died")


class TableSpec(_Strict):
    """A published table reproduced in its own layout: one row per arm, one column per metric."""

    title: str
    regime: str
    classifier: str | None = None
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "precision", "recall", "f1", "specificity",
                                                         "mcc"])
    rows: dict[str, str] = Field(default_factory=dict, description="arm -> row label (default: every arm)")


class Protocol(_Strict):
    """A whole study: data, regimes, arms, generators, classifiers, repeats, metrics, outputs."""

    name: str
    scale: Literal["paper", "cpu", "test"] = "cpu"
    description: str = ""
    data: DataSpec = Field(default_factory=DataSpec)
    preprocess: dict[str, Any] = Field(default_factory=dict, description="cxraug.data PreprocessConfig fields")
    split: SplitSpec = Field(default_factory=SplitSpec)
    regimes: list[RegimeSpec] = Field(default_factory=lambda: [RegimeSpec(name="full")], min_length=1)
    arms: list[ArmSpec] = Field(min_length=1)
    generators: dict[str, GeneratorSpec] = Field(default_factory=dict)
    classifiers: list[ClassifierSpec] = Field(min_length=1)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    repeats: RepeatSpec = Field(default_factory=RepeatSpec)
    metrics: MetricSpec = Field(default_factory=MetricSpec)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    tables: list[TableSpec] = Field(default_factory=list)
    output: str | None = Field(None, description="output directory; --out overrides; default runs/<name>")

    @model_validator(mode="after")
    def _references(self) -> "Protocol":
        for kind, names in (("arm", [a.name for a in self.arms]), ("regime", [r.name for r in self.regimes]),
                            ("classifier", [c.name for c in self.classifiers])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(dup)}")
        for arm in self.arms:
            if arm.generator and arm.generator not in self.generators:
                known = ", ".join(self.generators) or "none defined"
                raise ValueError(f"arm {arm.name!r} uses generator {arm.generator!r}, which is not under "
                                 f"generators (defined: {known})")
        regimes = {r.name for r in self.regimes}
        classifiers = {c.name for c in self.classifiers}
        arms = {a.name for a in self.arms}
        for r in self.regimes:
            unknown = sorted(set(r.arms or []) - arms)
            if unknown:
                raise ValueError(f"regime {r.name!r}: unknown arms {unknown}")
        for t in self.tables:
            if t.regime not in regimes:
                raise ValueError(f"table {t.title!r}: unknown regime {t.regime!r}")
            if t.classifier is not None and t.classifier not in classifiers:
                raise ValueError(f"table {t.title!r}: unknown classifier {t.classifier!r}")
            unknown = sorted(set(t.rows) - arms)
            if unknown:
                raise ValueError(f"table {t.title!r}: unknown arms {unknown}")
        return self

    def arm(self, name: str) -> ArmSpec:
        return next(a for a in self.arms if a.name == name)

    def arms_in(self, regime: RegimeSpec) -> list[ArmSpec]:
        """The arms trained on ``regime``, in protocol order."""
        return [a for a in self.arms if regime.trains(a.name)]


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``path: what was expected (got ...)``."""
    lines = []
    for err in exc.errors():
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "value_error") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{path or '<top level>'}: {msg}{shown}")
    return "\n".join(lines)


def _check_sub(model_cls: type[BaseModel], data: dict[str, Any], path: str) -> BaseModel:
    try:
        return model_cls(**data)
    except ValidationError as exc:
        raise _ProtocolProblem(format_validation_error(exc, prefix=path)) from None


class _ProtocolProblem(Exception):
    pass


def validate_protocol(raw: dict[str, Any]) -> Protocol:
    """Validate a parsed protocol, including the sub-configs owned by the data, generator and classifier code."""
    try:
        proto = Protocol.model_validate(raw)
    except ValidationError as exc:
        raise _ProtocolProblem(format_validation_error(exc)) from None

    _check_sub(PreprocessConfig, proto.preprocess, "preprocess")
    for name, spec in proto.generators.items():
        if spec.model not in GENERATORS:
            raise _ProtocolProblem(f"generators.{name}.model: unknown generator {spec.model!r}; "
                                   f"known: {', '.join(GENERATORS.names())}")
        _check_sub(GENERATORS.get(spec.model).Config, spec.config, f"generators.{name}.config")

    if proto.metrics.features not in EXTRACTORS:
        raise _ProtocolProblem(f"metrics.features: unknown feature extractor {proto.metrics.features!r}; "
                               f"known: {', '.join(EXTRACTORS.names())}")

    for i, arm in enumerate(proto.arms):
        if arm.policy is not None and arm.policy.mode == "edit":
            model = GENERATORS.get(proto.generators[arm.generator].model) if arm.generator else None
            if model is None or not can_edit(model):
                raise _ProtocolProblem(f"arms[{i}].policy.mode: edit needs a conditional diffusion model (ddpm) "
                                       f"that edits real images; arm {arm.name!r} uses "
                                       f"{model.name if model else 'no generator'}")
        if arm.classical and arm.classical not in POLICIES:
            raise _ProtocolProblem(f"arms[{i}].classical: unknown classical policy {arm.classical!r}; "
                                   f"known: {', '.join(POLICIES.names())}")

    for i, clf in enumerate(proto.classifiers):
        owned = sorted(set(clf.config) & _STUDY_OWNED)
        if owned:
            raise _ProtocolProblem(f"classifiers[{i}].config: {', '.join(owned)} are set by the study for every "
                                   "arm alike (training.loss_weighting, training.equal_steps, training.max_steps, "
                                   "training.eval_every, arms[].classical, classifiers[].size)")
        if clf.model not in CLASSIFIERS:
            raise _ProtocolProblem(f"classifiers[{i}].model: unknown classifier {clf.model!r}; "
                                   f"known: {', '.join(CLASSIFIERS.names())}")
        _check_sub(ClassifierConfig, classifier_config_fields(clf), f"classifiers[{i}]")
    return proto


#: ClassifierConfig fields the study sets itself, identically for every arm
_STUDY_OWNED = {"class_weights", "max_steps", "eval_every", "early_stopping", "augment", "size"}


def classifier_config_fields(clf: ClassifierSpec) -> dict[str, Any]:
    """The ClassifierConfig keyword arguments of a classifier entry."""
    fields: dict[str, Any] = {"model": clf.model, **clf.config}
    if clf.head is not None:
        fields["head"] = clf.head
    return fields


def shipped_protocols() -> dict[str, Path]:
    """The protocols installed with cxraug (``cxraug/configs/*.yaml``), by name."""
    folder = Path(str(resources.files("cxraug").joinpath("configs")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_protocol(name_or_path: str | Path) -> Path:
    """A protocol file: an existing path, else the shipped protocol of that name (``quickstart``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = shipped_protocols()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise CxraugError(f"protocol file not found: {p} (and no shipped protocol of that name; shipped: "
                      f"{', '.join(shipped)})")


def load_protocol(path: str | Path) -> Protocol:
    """Read and validate a protocol file (or a shipped protocol by name); any problem raises
    :class:`CxraugError` naming the field path."""
    p = resolve_protocol(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise CxraugError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CxraugError(f"{p}: a protocol is a YAML mapping (name:, arms:, classifiers:, ...), "
                          f"got {type(raw).__name__}")
    try:
        return validate_protocol(raw)
    except _ProtocolProblem as exc:
        raise CxraugError(f"{p}: invalid protocol:\n{exc}") from None
