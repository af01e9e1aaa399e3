"""The plan: a grid of units, each keyed by a content hash of everything that determines its result.

Two kinds of unit:

* generator unit - one generator entry trained on one training subset (regime x subset draw) with one
  generator seed; it also draws the pool of synthetic images every arm using it takes from, and scores
  the pool (KID/FID/coverage against the real-vs-real floor, memorisation audit). Shared by every
  classifier, classifier seed and arm that uses the generator on that subset.
* classifier unit - one classifier trained on one arm's training set (regime x draw x generator seed x
  classifier seed) and evaluated on the shared test set.

The key hashes the cxraug version, the data fingerprint (and the external test set's), the split, the
preprocessing, the regime, the draw, the model settings and seeds, and - for classifier units - the key of
the generator unit it consumes. Change any of them and the unit is recomputed; nothing stale is reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from cxraug import __version__
from cxraug.augment.synthetic import policy_counts
from cxraug.classifiers.train import ClassifierConfig, default_budget
from cxraug.data.names import match_class
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.study.protocol import ArmSpec, ClassifierSpec, Protocol, RegimeSpec, classifier_config_fields
from cxraug.study.specs import (ClassifierUnitSpec, GeneratorUnitSpec, StepBudget, UnitExecution, UnitMetrics,
                                UnitRegime, UnitTraining, content_key)

__all__ = ["DataInfo", "Plan", "Unit", "build_plan", "classifier_budget", "content_key", "describe"]

@dataclass(frozen=True)
class DataInfo:
    """What the plan needs to know about the loaded data."""

    fingerprint: str
    classes: list[str]
    #: (regime name, draw) -> real images per class of that training subset
    counts: dict[tuple[str, int], dict[str, int]]
    test_fingerprint: str | None = None
    size: int = 64
    #: (data, test) fingerprints of the images at a set of sizes (a unit's own); None: every unit gets the
    #: whole-study ``fingerprint``
    sizes_fingerprint: Callable[[set[int]], tuple[str, str | None]] | None = None

    def unit_data(self, *sizes: int) -> dict[str, str | None]:
        """The ``data`` / ``test_data`` fields of a unit that reads images at ``sizes`` (and the data size, whose
        images decide the split)."""
        if self.sizes_fingerprint is None:
            return {"data": self.fingerprint, "test_data": self.test_fingerprint}
        fp, test = self.sizes_fingerprint({self.size, *sizes})
        return {"data": fp, "test_data": test}


@dataclass
class Unit:
    """One unit of work. ``fields`` are the grid coordinates written to ``results.csv``."""

    key: str
    kind: str  # "generator" | "classifier"
    fields: dict[str, Any]
    spec: GeneratorUnitSpec | ClassifierUnitSpec
    needs: str | None = None  # key of the generator unit whose pool this unit consumes
    cost_s: float = 0.0  # estimated seconds (cxraug.study.cost), set by the driver

    @property
    def label(self) -> str:
        f = self.fields
        if self.kind == "generator":
            return f"generator {f['generator']} | {f['regime']} draw {f['draw']} seed {f['gen_seed']}"
        seed = "" if f["gen_seed"] is None else f" gen-seed {f['gen_seed']}"
        return (f"{f['classifier']} | {f['arm']} | {f['regime']} draw {f['draw']}{seed} "
                f"seed {f['clf_seed']}")


@dataclass
class Plan:
    units: list[Unit] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Unit]:
        return [u for u in self.units if u.kind == kind]

    def by_key(self) -> dict[str, Unit]:
        return {u.key: u for u in self.units}

    def consumers(self, key: str) -> list[Unit]:
        return [u for u in self.units if u.needs == key]


def _regime_spec(r: RegimeSpec) -> UnitRegime:
    return UnitRegime(**r.model_dump(exclude={"name", "arms"}))


def canonical_classes(names: list[str] | None, classes: list[str]) -> list[str] | None:
    """Class names as the data spells them (matching ignores case, spaces, hyphens, underscores)."""
    return None if names is None else [classes[match_class(n, classes)] for n in names]


def _arm_extra(arm: ArmSpec, counts: dict[str, int], gen_classes: list[str] | None) -> dict[str, int]:
    if arm.policy is None:
        return {}
    covered = canonical_classes(gen_classes, list(counts)) or list(counts)
    return policy_counts(arm.policy, counts, covered)


def classifier_budget(proto: Protocol, clf: ClassifierSpec, counts: dict[str, int]) -> StepBudget:
    """The step budget every arm of a regime shares, counted on the *real* training subset: validation every
    ``eval_every`` steps, ``max_steps`` in all, early stopping or not (``training.equal_steps``)."""
    cfg = ClassifierConfig(**classifier_config_fields(clf))
    every, steps = default_budget(cfg, sum(counts.values()))
    t = proto.training
    return StepBudget(eval_every=t.eval_every or every, max_steps=t.max_steps or steps,
                      early_stopping=not t.equal_steps)


#: the most units a plan may hold (a protocol asking for more is refused before anything is built)
MAX_UNITS = 100_000


def _check_size(proto: Protocol) -> None:
    rep = proto.repeats
    n = 0
    for regime in proto.regimes:
        arms = proto.arms_in(regime)
        used = {a.generator for a in arms if a.generator}
        n += rep.subset_draws * (len(used) * rep.generator_seeds + len(proto.classifiers) * rep.classifier_seeds
                                 * sum(rep.generator_seeds if a.generator else 1 for a in arms))
    if n > MAX_UNITS:
        raise CxraugError(f"the study would have {n} units (regimes x repeats.subset_draws x (generators x "
                          f"repeats.generator_seeds + classifiers x arms x repeats.classifier_seeds)), more than "
                          f"{MAX_UNITS}; lower repeats.classifier_seeds, repeats.subset_draws or "
                          f"repeats.generator_seeds")


#: the most images a policy may add to one class of a training subset
MAX_EXTRA_PER_CLASS = 1_000_000


def _check_policies(proto: Protocol, counts: dict[str, int], regime: RegimeSpec) -> None:
    for i, arm in enumerate(proto.arms):
        if arm not in proto.arms_in(regime):
            continue
        gen_classes = proto.generators[arm.generator].classes if arm.generator else None
        big = {c: n for c, n in _arm_extra(arm, counts, gen_classes).items() if n > MAX_EXTRA_PER_CLASS}
        if big:
            raise CxraugError(f"arms[{i}].policy (arm {arm.name!r}) adds {big} images per class on regime "
                              f"{regime.name!r}; at most {MAX_EXTRA_PER_CLASS} per class")


def build_plan(proto: Protocol, data: DataInfo) -> Plan:
    """Every unit of the study, generator units first; shared generator units appear once."""
    _check_size(proto)
    base = {"version": __version__, "split": proto.split, "preprocess": proto.preprocess, "classes": data.classes,
            "execution": UnitExecution(**proto.execution.model_dump(exclude={"retries", "gpus"}))}
    metrics = UnitMetrics(**proto.metrics.model_dump(exclude={"bootstrap", "subgroups", "confidence"}))
    plan = Plan()
    gen_units: dict[tuple, Unit] = {}
    rep = proto.repeats
    for regime in proto.regimes:
        arms = proto.arms_in(regime)
        for draw in range(rep.subset_draws):
            counts = data.counts[(regime.name, draw)]
            _check_policies(proto, counts, regime)
            # generator units: one per (entry, seed), pool sized for the most demanding arm that uses it
            for name, gspec in proto.generators.items():
                users = [a for a in arms if a.generator == name]
                if not users:
                    continue
                need: dict[str, int] = {}
                for arm in users:
                    if arm.policy is not None and arm.policy.mode == "edit":
                        continue  # an edit arm takes its own pool (``edits``), not free samples
                    for c, n in _arm_extra(arm, counts, gspec.classes).items():
                        need[c] = max(need.get(c, 0), n)
                pool = {c: n for c, n in need.items() if n > 0}
                filters = {a.policy.filter.key: a.policy.filter for a in users  # an edit arm's filter: its edit pool
                           if a.policy is not None and a.policy.filter is not None and a.policy.mode != "edit"}
                edits = {a.policy.key: a.policy for a in users if a.policy is not None and a.policy.mode == "edit"}
                for gseed in range(rep.generator_seeds):
                    cfg = dict(gspec.config)
                    cfg["seed"] = int(cfg.get("seed", 0)) + gseed
                    spec = GeneratorUnitSpec(
                        **base, **data.unit_data(GENERATORS.get(gspec.model).Config(**cfg).size),
                        regime=_regime_spec(regime), draw=draw, model=gspec.model, config=cfg,
                        train_classes=canonical_classes(gspec.classes, data.classes), checkpoint=gspec.checkpoint,
                        pool=pool, drop_near_copies=gspec.drop_near_copies,
                        curations=[filters[k] for k in sorted(filters)], edits=[edits[k] for k in sorted(edits)],
                        source=canonical_classes([gspec.source], data.classes)[0] if gspec.source else None,
                        metrics=metrics)
                    unit = Unit(key=spec.key, kind="generator",
                                fields={"generator": name, "model": gspec.model, "regime": regime.name,
                                        "draw": draw, "gen_seed": gseed},
                                spec=spec)
                    gen_units[(name, regime.name, draw, gseed)] = unit
                    plan.units.append(unit)
            for clf in proto.classifiers:
                budget = classifier_budget(proto, clf, counts)
                for arm in arms:
                    gseeds: list[int | None] = list(range(rep.generator_seeds)) if arm.generator else [None]
                    for gseed in gseeds:
                        gunit = gen_units[(arm.generator, regime.name, draw, gseed)] if arm.generator else None
                        for cseed in range(rep.classifier_seeds):
                            cfg = classifier_config_fields(clf)
                            cfg["seed"] = int(cfg.get("seed", 0)) + cseed
                            spec = ClassifierUnitSpec(
                                **base, **data.unit_data(clf.size or data.size), regime=_regime_spec(regime),
                                draw=draw, classifier=cfg, size=clf.size,
                                arm=arm, generator_unit=gunit.key if gunit else None,
                                training=UnitTraining(loss_weighting=proto.training.loss_weighting), budget=budget)
                            plan.units.append(Unit(
                                key=spec.key, kind="classifier",
                                fields={"arm": arm.name, "role": arm.role, "regime": regime.name,
                                        "classifier": clf.name, "draw": draw, "gen_seed": gseed, "clf_seed": cseed},
                                spec=spec, needs=gunit.key if gunit else None))
    return plan


def describe(plan: Plan, done: set[str]) -> list[str]:
    """Human-readable plan lines: counts and reuse (the cost of what is left: :mod:`cxraug.study.cost`)."""
    gens, clfs = plan.of_kind("generator"), plan.of_kind("classifier")
    left = [u for u in plan.units if u.key not in done]
    lines = [f"{len(plan.units)} units: {len(gens)} generator, {len(clfs)} classifier; "
             f"{len(plan.units) - len(left)} already finished (reused), {len(left)} to run"]
    for g in gens:
        users = plan.consumers(g.key)
        arms = sorted({u.fields["arm"] for u in users})
        state = "done" if g.key in done else "to run"
        lines.append(f"  {g.label} [{g.key}] ({state}) -> reused by {len(users)} classifier units "
                     f"(arms {', '.join(arms)}; pool {g.spec.pool})")
    return lines
