"""Fair comparisons: the baselines every generative arm must beat, and which of them is the strongest.

* :func:`complete_arms` - every generative arm is compared with a classical-only arm and with an
  ``oversample + classical`` arm that adds *repeated real* images at the same image count (same policy, same
  classes, or a policy giving the same counts in every regime of the arm). Missing ones are added
  (``training.add_baselines``), each with a note that the outputs carry.
* :func:`pairings` - which arm each arm is compared with: the first ``none`` arm, the first classical-only arm,
  the oversample arm with the same policy, and - for generative arms - the strongest non-generative arm.
* :func:`strongest` - the non-generative arm with the highest mean *validation* macro-F1 (never test): the
  baseline of the report's headline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxraug.augment.synthetic import SyntheticPolicy, policy_counts
from cxraug.study.protocol import ArmSpec, Protocol

#: classical policy of added baselines when no arm of the protocol names one
DEFAULT_CLASSICAL = "fedoruk"
ROLES = ("none", "classical", "oversample")


def _covered_policy(arm: ArmSpec, proto: Protocol, classes: list[str]) -> SyntheticPolicy:
    """The arm's image counts as a policy of repeated real images: its classes that actually receive images spelt
    out (a generator trained on some classes only, or a translation model, covers fewer than all), without its
    curation filter (which only applies to generated images)."""
    assert arm.policy is not None
    policy = arm.policy if arm.policy.filter is None else arm.policy.model_copy(update={"filter": None})
    if policy.mode == "edit":  # per_image repeats of each edited real image (a target arm: the same total count)
        assert arm.generator is not None
        gen = proto.generators[arm.generator]
        sources = [c for c in (policy.classes or gen.classes or classes) if c != policy.target]
        return SyntheticPolicy(mode="ratio", ratio=float(policy.per_image or 1), classes=sources)
    if policy.classes is not None or not arm.generator:
        return policy
    gen = proto.generators[arm.generator]
    covered = [c for c in (gen.classes or classes) if c != gen.source]
    return policy if covered == list(classes) else policy.model_copy(update={"classes": covered})


def _same_count(over: SyntheticPolicy | None, policy: SyntheticPolicy, gen_arm: ArmSpec, proto: Protocol,
                classes: list[str]) -> bool:
    """``over`` adds as many repeated real images per class as ``policy`` (a generative arm's covered policy) in
    every regime the generative arm trains on: the same policy, or e.g. ``add 200`` and ``ratio 4`` where every
    regime of the arm has 50 images per class (the real counts of other regimes are known only at run time)."""
    if over == policy:
        return True
    regimes = [r for r in proto.regimes if r.trains(gen_arm.name)]
    if over is None or not regimes or any(r.n_per_class is None for r in regimes):
        return False
    return all(policy_counts(over, real, classes) == policy_counts(policy, real, classes)
               for real in ({c: r.n_per_class for c in classes} for r in regimes))


def _unique(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}-{k}", k + 1
    return out


def complete_arms(proto: Protocol, classes: list[str]) -> tuple[Protocol, list[str]]:
    """The protocol with a classical arm and a matched oversample + classical arm for every generative arm that
    lacks them, and one note per added arm. A regime that lists its arms gets a generative arm's baselines too."""
    if not proto.training.add_baselines:
        return proto, []
    arms = list(proto.arms)
    regimes = list(proto.regimes)
    notes: list[str] = []
    default = next((a.classical for a in arms if a.classical), DEFAULT_CLASSICAL)
    for gen_arm in [a for a in proto.arms if a.role == "generative"]:
        policy = _covered_policy(gen_arm, proto, classes)
        classical = gen_arm.classical or default
        base = next((a for a in arms if a.role == "classical" and a.classical == classical), None)
        if base is None:
            base = ArmSpec(name=_unique("classical" if classical == default else f"classical-{classical}",
                                        {a.name for a in arms}), classical=classical)
            arms.append(base)
            notes.append(f"added arm {base.name!r} (classical {classical}): the classical baseline of generative arm "
                         f"{gen_arm.name!r}")
        over = next((a for a in arms if a.oversample and a.classical == classical
                     and _same_count(a.policy, policy, gen_arm, proto, classes)), None)
        if over is None:
            over = ArmSpec(name=_unique(f"oversample+{classical}", {a.name for a in arms}), oversample=True,
                           policy=policy, classical=classical)
            arms.append(over)
            notes.append(f"added arm {over.name!r} (repeated real images, same policy {policy.model_dump()}, "
                         f"classical {classical}): the same-image-count baseline of generative arm "
                         f"{gen_arm.name!r}")
        regimes = [r if r.arms is None or not r.trains(gen_arm.name) else
                   r.model_copy(update={"arms": [*r.arms, *(b.name for b in (base, over) if b.name not in r.arms)]})
                   for r in regimes]
    return proto.model_copy(update={"arms": arms, "regimes": regimes}), notes


@dataclass(frozen=True)
class Pairing:
    """``arm`` is compared with ``baseline``; ``role`` says why (none / classical / oversample / strongest)."""

    regime: str
    classifier: str
    arm: str
    baseline: str
    role: str
    strongest: bool  # the baseline is the strongest non-generative arm of this regime and classifier


def strongest(val_f1: dict[str, list[float]], proto: Protocol) -> str | None:
    """The non-generative arm with the highest mean validation macro-F1 (ties: the first in protocol order)."""
    means = {a.name: float(np.mean(val_f1[a.name])) for a in proto.arms
             if a.role != "generative" and val_f1.get(a.name)}
    return max(means, key=lambda n: means[n]) if means else None


def _matched_oversample(arm: ArmSpec, arms: list[ArmSpec], proto: Protocol, classes: list[str]) -> str | None:
    over = [a for a in arms if a.oversample]
    if arm.policy is None or not over:
        return over[0].name if over else None
    policy = _covered_policy(arm, proto, classes)
    same = [a for a in over if _same_count(a.policy, policy, arm, proto, classes)]
    exact = [a for a in same if a.classical == arm.classical or (arm.generator and a.classical)]
    return (exact or same or over)[0].name


def pairings(proto: Protocol, classes: list[str], val_f1: dict[tuple[str, str], dict[str, list[float]]]
             ) -> list[Pairing]:
    """Every comparison of the study. ``val_f1[(regime, classifier)][arm]`` holds the arm's validation
    macro-F1 per repeat (it picks the strongest baseline)."""
    out = []
    for regime in proto.regimes:
        arms = proto.arms_in(regime)
        first = {role: next((a.name for a in arms if a.role == role), None) for role in ("none", "classical")}
        for clf in proto.classifiers:
            best = strongest(val_f1.get((regime.name, clf.name), {}), proto)
            for arm in arms:
                bases = {"none": first["none"], "classical": first["classical"],
                         "oversample": _matched_oversample(arm, arms, proto, classes)}
                seen = set()
                for role, base in bases.items():
                    if base is None or base == arm.name or base in seen:
                        continue
                    seen.add(base)
                    out.append(Pairing(regime.name, clf.name, arm.name, base, role,
                                       arm.role == "generative" and base == best))
                if arm.role == "generative" and best is not None and best not in seen:
                    out.append(Pairing(regime.name, clf.name, arm.name, best, "strongest", True))
    return out
