"""Protocol validation and planning: field-path errors, shipped configs, content keys, generator reuse."""

from pathlib import Path

import pytest
import copy

import yaml

from cxraug.errors import CxraugError
from cxraug.study.plan import DataInfo, build_plan, content_key
from cxraug.study.protocol import load_protocol, shipped_protocols

BASE = {
    "name": "t",
    "arms": [{"name": "none"}, {"name": "gen", "generator": "g", "policy": {"mode": "add", "n_per_class": 5}}],
    "generators": {"g": {"model": "noise", "config": {"size": 32}}},
    "classifiers": [{"name": "a", "model": "custom-cnn", "config": {"epochs": 1}},
                    {"name": "b", "model": "custom-cnn", "config": {"epochs": 2}}],
    "preprocess": {"size": 32},
    "repeats": {"classifier_seeds": 2},
}


def _write(tmp_path: Path, raw: dict) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _error(tmp_path: Path, raw: dict) -> str:
    with pytest.raises(CxraugError) as exc:
        load_protocol(_write(tmp_path, raw))
    return str(exc.value)


@pytest.mark.parametrize("patch, expected", [
    ({"arms": [{"name": "x", "generator": "g", "policy": {"mode": "double"}}]},
     "arms[0].policy.mode: Input should be 'add', 'balance', 'ratio' or 'edit' (got 'double')"),
    ({"repeats": {"classifier_seeds": 0}}, "repeats.classifier_seeds: Input should be greater than or equal to 1"),
    ({"generators": {"g": {"model": "noise", "config": {"steps": -1}}}},
     "generators.g.config.steps: Input should be greater than or equal to 0"),
    ({"classifiers": [{"name": "a", "model": "custom-cnn", "config": {"optimizer": "lion"}}]},
     "classifiers[0].optimizer: Input should be"),
    ({"classifiers": [{"name": "a", "model": "custom-cnn", "config": {"class_weights": True}}]},
     "classifiers[0].config: class_weights are set by the study for every arm alike"),
    ({"preprocess": {"size": 8}}, "preprocess.size: Input should be greater than or equal to 16"),
    ({"splitt": {}}, "splitt: Extra inputs are not permitted"),
    ({"arms": [{"name": "x", "generator": "nope", "policy": {"mode": "balance"}}]},
     "uses generator 'nope', which is not under generators"),
    ({"arms": [{"name": "x", "classical": "rot90"}]}, "arms[0].classical: unknown classical policy 'rot90'"),
    ({"generators": {"g": {"model": "gan9000"}}}, "generators.g.model: unknown generator 'gan9000'"),
])
def test_invalid_protocol_names_field_path(tmp_path: Path, patch: dict, expected: str) -> None:
    msg = _error(tmp_path, {**BASE, **patch})
    assert expected in msg, msg
    assert str(tmp_path / "p.yaml") in msg


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("- just\n- a list\n")
    with pytest.raises(CxraugError, match="YAML mapping"):
        load_protocol(p)
    p.write_text("name: [unclosed\n")
    with pytest.raises(CxraugError, match="not valid YAML"):
        load_protocol(p)


def test_shipped_configs_are_valid() -> None:
    shipped = shipped_protocols()
    assert "quickstart" in shipped and all(p.parent.name == "configs" for p in shipped.values())
    for name, f in shipped.items():
        proto = load_protocol(f)
        assert proto.name == name and proto.description  # what `cxraug protocols` lists
        assert load_protocol(name) == proto  # a shipped protocol runs by name


def test_unknown_protocol_names_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(CxraugError, match="no shipped protocol of that name; shipped: .*quickstart"):
        load_protocol(tmp_path / "nosuch.yaml")


def _info() -> DataInfo:
    return DataInfo(fingerprint="f", classes=["A", "B"], counts={("full", 0): {"A": 30, "B": 10}}, size=32)


def test_generator_shared_by_classifiers_and_seeds(tmp_path: Path) -> None:
    proto = load_protocol(_write(tmp_path, BASE))
    plan = build_plan(proto, _info())
    (gen,) = plan.of_kind("generator")
    users = plan.consumers(gen.key)
    assert len(users) == 4  # 2 classifiers x 2 seeds, one generator unit
    assert gen.spec.pool == {"A": 5, "B": 5}
    assert len(plan.of_kind("classifier")) == 8
    assert len({u.key for u in plan.units}) == len(plan.units)


def test_keys_change_with_what_determines_a_unit(tmp_path: Path) -> None:
    proto = load_protocol(_write(tmp_path, BASE))
    keys = {u.key for u in build_plan(proto, _info()).units}
    assert keys == {u.key for u in build_plan(proto, _info()).units}  # deterministic
    other_data = DataInfo(fingerprint="g", classes=["A", "B"], counts=_info().counts, size=32)
    assert keys.isdisjoint({u.key for u in build_plan(proto, other_data).units})
    raw = {**BASE, "generators": {"g": {"model": "noise", "config": {"size": 32, "seed": 7}}}}
    changed = build_plan(load_protocol(_write(tmp_path, raw)), _info())
    gen = changed.of_kind("generator")[0]
    assert gen.key not in keys
    none_units = {u.key for u in changed.of_kind("classifier") if u.fields["arm"] == "none"}
    assert none_units <= keys  # the none arm does not depend on the generator
    assert content_key({"a": 1, "b": 2}) == content_key({"b": 2, "a": 1})


def test_balance_policy_pool_and_equal_steps(tmp_path: Path) -> None:
    raw = {**BASE, "arms": [{"name": "none"},
                            {"name": "gen", "generator": "g", "policy": {"mode": "balance"}},
                            {"name": "over", "oversample": True, "policy": {"mode": "balance"}}],
           "training": {"equal_steps": True}}
    plan = build_plan(load_protocol(_write(tmp_path, raw)), _info())
    (gen,) = plan.of_kind("generator")
    assert gen.spec.pool == {"B": 20}  # B up to A's 30 real images
    # budgets counted on the 40 *real* images (batch 32: 2 steps a pass), the same for every arm of a classifier
    budgets = {(u.fields["classifier"], u.fields["arm"]): u.spec.budget.model_dump() for u in plan.of_kind("classifier")}
    for arm in ("none", "gen", "over"):
        assert budgets[("a", arm)] == {"eval_every": 2, "max_steps": 2, "early_stopping": False}  # 1 epoch
        assert budgets[("b", arm)] == {"eval_every": 2, "max_steps": 4, "early_stopping": False}  # 2 epochs


def test_shared_budget_overrides_and_early_stopping_mode(tmp_path: Path) -> None:
    raw = {**BASE, "classifiers": [{"name": "auto", "model": "custom-cnn"}],
           "training": {"equal_steps": False}}
    plan = build_plan(load_protocol(_write(tmp_path, raw)), _info())
    # no budget given: the automatic one (40 passes of 2 steps < 400 steps; a check every pass < 10 steps)
    assert {str(u.spec.budget.model_dump()) for u in plan.of_kind("classifier")} == {
        str({"eval_every": 10, "max_steps": 400, "early_stopping": True})}
    raw["training"] = {"max_steps": 77, "eval_every": 7}
    plan = build_plan(load_protocol(_write(tmp_path, raw)), _info())
    assert {str(u.spec.budget.model_dump()) for u in plan.of_kind("classifier")} == {
        str({"eval_every": 7, "max_steps": 77, "early_stopping": False})}


def test_generative_arms_get_classical_and_same_count_oversample_baselines(tmp_path: Path) -> None:
    from cxraug.study.baselines import complete_arms, pairings

    raw = {**BASE, "arms": [{"name": "none"}, {"name": "gen", "generator": "g", "classical": "keras",
                                               "policy": {"mode": "add", "n_per_class": 5}},
                            {"name": "gen-b", "generator": "gb", "policy": {"mode": "add", "n_per_class": 5}}],
           "generators": {"g": {"model": "noise", "config": {"size": 32}},
                          "gb": {"model": "noise", "classes": ["B"], "config": {"size": 32}}}}
    proto, notes = complete_arms(load_protocol(_write(tmp_path, raw)), ["A", "B"])
    added = {a.name: a for a in proto.arms[3:]}
    assert list(added) == ["classical", "oversample+keras", "oversample+keras-2"] and len(notes) == 3
    assert added["classical"].classical == "keras" and added["oversample+keras"].policy.n_per_class == 5
    # the generator of gen-b covers class B only: its oversample baseline repeats B images only
    assert added["oversample+keras-2"].policy.classes == ["B"]
    assert all("added arm" in n for n in notes)
    again, more = complete_arms(proto, ["A", "B"])
    assert not more and [a.name for a in again.arms] == [a.name for a in proto.arms]  # idempotent
    off = load_protocol(_write(tmp_path, {**raw, "training": {"add_baselines": False}}))
    assert complete_arms(off, ["A", "B"]) == (off, [])
    # the strongest non-generative arm is chosen by validation macro-F1, never by test
    val = {("full", "a"): {"none": [0.5, 0.6], "classical": [0.7, 0.8], "oversample+keras": [0.6, 0.6],
                           "gen": [0.9, 0.9]}}
    pairs = [p for p in pairings(proto, ["A", "B"], val) if p.classifier == "a"]
    strongest = {(p.arm, p.baseline) for p in pairs if p.strongest}
    assert strongest == {("gen", "classical"), ("gen-b", "classical")}  # every generative arm, the same baseline
    matched = {(p.arm, p.role): p.baseline for p in pairs}
    assert matched[("gen", "oversample")] == "oversample+keras"
    assert matched[("gen-b", "oversample")] == "oversample+keras-2"


def test_an_oversample_arm_with_the_same_counts_in_every_regime_is_the_matched_baseline(tmp_path: Path) -> None:
    """4 edits of each of 50 images = +200 per class = an ``add 200`` oversample arm, when every regime of the
    edit arm has 50 images per class (repeat_real then draws the very same images): no twin arm is added. With a
    full-data regime the counts are unknown until run time, and the matched ratio-4 arm is added."""
    from cxraug.study.baselines import complete_arms, pairings

    arms = [{"name": "classical", "classical": "fedoruk"},
            {"name": "over", "oversample": True, "classical": "fedoruk", "policy": {"mode": "add", "n_per_class": 200}},
            {"name": "edit", "generator": "g", "classical": "fedoruk",
             "policy": {"mode": "edit", "per_image": 4, "strength": 0.5}}]
    raw = {**BASE, "arms": arms, "regimes": [{"name": "n50", "n_per_class": 50},
                                             {"name": "n200", "n_per_class": 200, "arms": ["classical"]}],
           "generators": {"g": {"model": "ddpm", "config": {"size": 32}}}}
    proto, notes = complete_arms(load_protocol(_write(tmp_path, raw)), ["A", "B"])
    assert notes == [] and [a.name for a in proto.arms] == ["classical", "over", "edit"]
    matched = {(p.regime, p.arm, p.role): p.baseline for p in pairings(proto, ["A", "B"], {})}
    assert matched[("n50", "edit", "oversample")] == "over"
    raw["regimes"] = [{"name": "n50", "n_per_class": 50}, {"name": "n60", "n_per_class": 60}]  # 240 != 200 at n60
    proto, notes = complete_arms(load_protocol(_write(tmp_path, raw)), ["A", "B"])
    assert [a.name for a in proto.arms][3:] == ["oversample+fedoruk"] and proto.arms[3].policy.ratio == 4.0
    raw["regimes"] = [{"name": "full"}]
    proto, notes = complete_arms(load_protocol(_write(tmp_path, raw)), ["A", "B"])
    assert [a.name for a in proto.arms][3:] == ["oversample+fedoruk"]


def test_fields_added_later_stay_out_of_keys_at_their_default(tmp_path: Path) -> None:
    """Study folders from before the curation (and edit) fields keep their unit keys; setting a field changes the key of
    exactly the units it affects."""
    from cxraug.study.specs import content_key

    raw = copy.deepcopy(BASE)
    plan = build_plan(load_protocol(_write(tmp_path, raw)), _info())
    for u in plan.units:
        old = u.spec.model_dump(exclude={"curations", "edits"} if u.kind == "generator" else
                                {"arm": {"synthetic_weight", "synthetic_label_smoothing", "schedule",
                                         "finetune_fraction"}})
        if u.kind == "classifier" and old["arm"]["policy"] is not None:
            for k in ("filter", "per_image", "strength", "steps", "guidance", "target"):
                old["arm"]["policy"].pop(k)
        assert u.key == content_key(old)
    gen_arm = next(a for a in raw["arms"] if a.get("generator"))
    gen_arm["synthetic_weight"] = 0.5
    weighted = build_plan(load_protocol(_write(tmp_path, raw)), _info())
    changed = {u.fields["arm"] for u, v in zip(plan.units, weighted.units) if u.key != v.key}
    assert changed == {gen_arm["name"]}
    gen_arm["policy"]["filter"] = {"confidence": 0.5}
    filtered = build_plan(load_protocol(_write(tmp_path, raw)), _info())
    (g,) = filtered.of_kind("generator")
    assert [f.confidence for f in g.spec.curations] == [0.5] and g.key != plan.of_kind("generator")[0].key


def test_a_regime_can_train_only_some_arms(tmp_path: Path) -> None:
    """A reference regime (more real images) that trains only the classical arm: its units, its pairings and the
    baselines a listed generative arm brings along; the other regime's unit keys do not change."""
    from cxraug.study.baselines import complete_arms, pairings

    raw = {**BASE, "arms": [{"name": "none"}, {"name": "classical", "classical": "fedoruk"},
                            {"name": "gen", "generator": "g", "classical": "fedoruk",
                             "policy": {"mode": "add", "n_per_class": 5}}],
           "regimes": [{"name": "small", "n_per_class": 5}]}
    info = DataInfo(fingerprint="f", classes=["A", "B"], size=32,
                    counts={("small", 0): {"A": 5, "B": 5}, ("big", 0): {"A": 20, "B": 20}})
    alone = build_plan(load_protocol(_write(tmp_path, raw)), info)
    raw["regimes"] = raw["regimes"] + [{"name": "big", "n_per_class": 20, "arms": ["classical"]}]
    proto = load_protocol(_write(tmp_path, raw))
    plan = build_plan(proto, info)
    big = [u for u in plan.units if u.fields["regime"] == "big"]
    assert {u.fields["arm"] for u in big} == {"classical"} and len(big) == 4  # 2 classifiers x 2 seeds
    assert all(u.kind == "classifier" for u in big)  # no generator unit for a regime without generative arms
    assert {u.key for u in plan.units} - {u.key for u in big} == {u.key for u in alone.units}
    val = {(r, c): {"none": [0.5], "classical": [0.6], "gen": [0.7]} for r in ("small", "big") for c in "ab"}
    assert {(p.arm, p.baseline) for p in pairings(proto, ["A", "B"], val) if p.regime == "big"} == set()
    assert "regime 'big': unknown arms ['nope']" in _error(
        tmp_path, {**raw, "regimes": [{"name": "big", "n_per_class": 20, "arms": ["nope"]}]})
    raw["regimes"][1]["arms"] = ["gen"]  # a generative arm listed alone brings its baselines into the regime
    done, _ = complete_arms(load_protocol(_write(tmp_path, raw)), ["A", "B"])
    assert done.regimes[1].arms == ["gen", "classical", "oversample+fedoruk"]
    assert [a.name for a in done.arms_in(done.regimes[1])] == ["classical", "gen", "oversample+fedoruk"]
