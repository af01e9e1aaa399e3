"""The measured cost model: cached step times, unit estimates from step counts, the executor's schedule replayed,
and the estimate beside the actual wall time in study.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from study_tiny import tiny_protocol, write_protocol

from cxraug.study.cost import ModelTimes, StepTimer, UnitSizes, makespan, unit_seconds
from cxraug.study.data import load_study_data, sizes_needed
from cxraug.study.plan import DataInfo, Plan, Unit, build_plan
from cxraug.study.protocol import load_protocol
from cxraug.study.runner import run_study


def _unit(key: str, needs: str | None = None) -> Unit:
    return Unit(key=key, kind="generator" if needs is None and key.startswith("g") else "classifier",
                fields={}, spec=None, needs=needs)  # type: ignore[arg-type]


def test_makespan_replays_dependencies_and_longest_first() -> None:
    plan = Plan([_unit("g"), _unit("c1", "g"), _unit("c2", "g"), _unit("a")])
    cost = {"g": 10.0, "c1": 9.0, "c2": 5.0, "a": 7.0}
    assert makespan(plan, cost, 1) == 31.0
    # two workers: g and a start at once; c1 and c2 wait for g (t = 10) and end at 19 and 15
    assert makespan(plan, cost, 2) == 19.0
    assert makespan(plan, cost, 4) == 19.0  # the dependency, not the workers, bounds it
    assert makespan(plan, cost, 2, done={"g"}) == 12.0  # longest first: c1 (0-9) and a (0-7), then c2 (7-12)
    assert makespan(plan, cost, 1, done={"g", "a"}) == 14.0


class _FixedTimer:
    """A timer whose models take 1 s per step and 0.01 s per image (generators: 2 s and 0.1 s)."""

    def classifier(self, cfg, num_classes, size):  # noqa: ANN001, ANN201
        return ModelTimes(1.0, 0.01)

    def encoder(self, cfg, num_classes):  # noqa: ANN001, ANN201
        return ModelTimes(0.5, 0.001)

    def generator(self, model, config, classes):  # noqa: ANN001, ANN201
        return ModelTimes(2.0, 0.1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):  # noqa: ANN001, ANN201
    tmp = tmp_path_factory.mktemp("cost")
    raw = tiny_protocol(tmp / "cache")
    raw["arms"].append({"name": "dcgan3", "generator": "dcgan3", "policy": {"mode": "add", "n_per_class": 12}})
    raw["generators"]["dcgan3"] = {"model": "dcgan", "config": {**raw["generators"]["dcgan"]["config"],
                                                                "steps": 72}}
    raw["training"] = {"equal_steps": True, "max_steps": 30, "eval_every": 10}
    proto = load_protocol(write_protocol(tmp / "p.yaml", raw))
    data = load_study_data(proto, None, None)
    size, _, _ = sizes_needed(proto)
    info = DataInfo(fingerprint=data.fingerprint, classes=data.classes, counts=data.counts(size), size=size)
    return proto, data, build_plan(proto, info)


def test_unit_estimates_count_steps_images_and_per_class_models(tiny) -> None:  # noqa: ANN001
    proto, data, plan = tiny
    counts = {"COVID": 12, "Normal": 12}
    sizes = UnitSizes(n_val=20, n_test=30)
    timer = _FixedTimer()
    clf = next(u for u in plan.of_kind("classifier") if u.fields["arm"] == "none")
    # 30 steps of 1 s; 3 validation checks of 20 images, the final validation and test predictions at 0.01 s
    assert unit_seconds(clf, counts, sizes, 32, timer) == pytest.approx(30 + (3 * 20 + 20 + 30) * 0.01)
    gens = {u.fields["generator"]: u for u in plan.of_kind("generator")}
    g24, g72 = (unit_seconds(gens[n], counts, sizes, 32, timer) for n in ("dcgan", "dcgan3"))
    cfg = gens["dcgan"].spec.config
    # DCGAN is unconditional: one model per class, each 24 steps of 2 s; grids every 12 steps, KID samples not
    # drawn (image metrics off), then the pool of 12 per class
    images = 2 * (24 // cfg["sample_every"]) * 16 + 24
    assert g24 == pytest.approx(2 * 24 * 2.0 + images * 0.1)
    assert g72 - g24 == pytest.approx(2 * 48 * 2.0 + 2 * (72 - 24) // cfg["sample_every"] * 16 * 0.1)


def test_ddpm_edits_cost_their_whole_chain_and_twice_when_guided(tiny) -> None:  # noqa: ANN001
    from cxraug.augment.synthetic import SyntheticPolicy

    proto, data, plan = tiny
    gen = next(iter(plan.of_kind("generator")))
    config = {"size": 32, "steps": 10, "sample_every": 10, "checkpoint_every": 10, "sample_steps": 20,
              "guidance_scale": 1.0}
    counts, sizes = {"COVID": 12, "Normal": 12}, UnitSizes(n_val=20, n_test=30)

    def cost(**edit: object) -> float:
        policies = [SyntheticPolicy(mode="edit", per_image=2, **edit)] if edit else []
        spec = gen.spec.model_copy(update={"model": "ddpm", "config": config, "pool": {}, "curations": [],
                                           "edits": policies})
        return unit_seconds(Unit(key="g", kind="generator", fields={}, spec=spec), counts, sizes, 32,
                            _FixedTimer())

    base = cost()
    # 48 edits; a timed image is a 20-step unguided chain (0.1 s): 10 steps guided = 20 passes = one image each
    assert cost(strength=0.3, steps=10, guidance=3.0) - base == pytest.approx(48 * 0.1)
    assert cost(strength=0.9, steps=10, guidance=3.0) - base == pytest.approx(48 * 0.1)  # not scaled by strength
    assert cost(strength=0.3, steps=10, guidance=1.0) - base == pytest.approx(48 * 0.05)
    assert cost(strength=0.3) - base == pytest.approx(48 * 0.1)  # the model's own 20 steps and guidance
    # a strength below steps / T (1000 timesteps) has fewer steps to run: s = 0.005 is 5 of them
    assert cost(strength=0.005, steps=10, guidance=1.0) - base == pytest.approx(48 * 0.1 * 5 / 20)


def test_step_times_are_cached_per_machine_and_threads(tmp_path: Path, tiny) -> None:  # noqa: ANN001
    proto, data, plan = tiny
    clf = next(u for u in plan.of_kind("classifier"))
    from cxraug.classifiers.config import ClassifierConfig

    cfg = ClassifierConfig(**clf.spec.classifier)
    cache = tmp_path / "step_times.json"
    first = StepTimer(cache, threads=1, repeats=1)
    t = first.classifier(cfg, 2, 32)
    assert first.measured == 1 and t.step_s > 0 and t.image_s > 0
    again = StepTimer(cache, threads=1, repeats=1)
    assert again.classifier(cfg, 2, 32) == t and again.measured == 0  # read back, not re-timed
    assert StepTimer(cache, threads=2, repeats=1).classifier(cfg, 2, 32) is not None
    assert len(json.loads(cache.read_text())) == 2  # another thread count is another measurement
    cache.write_text("{not json")
    damaged = StepTimer(cache, threads=1, repeats=1)
    damaged.classifier(cfg, 2, 32)
    assert damaged.measured == 1  # a damaged cache is measured again, not trusted


def test_study_json_records_estimate_and_actual(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    raw = tiny_protocol(tmp_path / "cache", training={"add_baselines": False})  # 1 generator + 4 classifier units
    proto = load_protocol(write_protocol(tmp_path / "p.yaml", raw))
    run_study(proto, tmp_path / "out", dry_run=True)
    said = " ".join(capsys.readouterr().err.split())  # the console writes to stderr, wrapped
    assert "estimated wall time of what is left" in said and "5 units with 1 worker(s)" in said
    run_study(proto, tmp_path / "out")
    cost = json.loads((tmp_path / "out" / "study.json").read_text())["cost"]
    assert cost["units_left"] == 5 and cost["workers"] == 1 and cost["estimate_s"] > 0
    assert {u["unit"] for u in cost["units"]} == {r["key"] for r in json.loads((tmp_path / "out/plan.json")
                                                                               .read_text())}
    assert all(u["estimate_s"] > 0 and u["actual_s"] > 0 for u in cost["units"])
    assert (tmp_path / "cache" / "step_times.json").is_file()  # measured once, next to the study's caches


def test_big_batches_are_timed_at_64_and_scaled(monkeypatch: pytest.MonkeyPatch, tiny) -> None:  # noqa: ANN001
    from cxraug.classifiers.config import ClassifierConfig
    from cxraug.study import cost

    proto, data, plan = tiny
    seen: list[int] = []
    monkeypatch.setattr(cost, "_median_seconds", lambda fn, repeats: (fn(), 1.0)[1])
    monkeypatch.setattr(cost, "_random_images", lambda n, size, classes: seen.append(n) or
                        cost.ImageSet(np.zeros((n, size, size), np.uint8), np.arange(n) % len(classes), classes))
    clf = next(u for u in plan.of_kind("classifier"))
    t = StepTimer(None, threads=1).classifier(ClassifierConfig(**{**clf.spec.classifier, "batch_size": 256}), 2, 32)
    assert seen == [64] and t == ModelTimes(step_s=4.0, image_s=1 / 64)  # 256 / 64 steps' worth of one step


def test_a_model_that_cannot_be_timed_gives_no_estimate_not_a_crash(monkeypatch: pytest.MonkeyPatch,
                                                                    tiny) -> None:  # noqa: ANN001
    from cxraug.study import cost

    with pytest.raises(cost.TimingFailed, match="timing generator dcgan failed: division by zero"):
        StepTimer(None, threads=1)._get({"kind": "generator", "model": "dcgan"}, lambda: 1 / 0)
    proto, data, plan = tiny

    def refuse(self, *args):  # noqa: ANN001, ANN002, ANN202
        raise cost.TimingFailed("timing classifier custom-cnn failed: out of memory")

    monkeypatch.setattr(cost.StepTimer, "classifier", refuse)
    est = cost.estimate_plan(plan, proto, data, 32, set(), workers=2)
    assert est.line() == "no wall-time estimate: timing classifier custom-cnn failed: out of memory"
    assert est.record({}, 5.0) == {"estimate_s": None, "actual_s": 5.0,
                                   "failed": "timing classifier custom-cnn failed: out of memory"}
