"""Running studies: regime checks, generator reuse, the synthetic-image canary, the external test set (kills and
other faults: tests/test_study_faults.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from study_tiny import results_without_timing, tiny_protocol, write_protocol

from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError
from cxraug.study.baselines import complete_arms
from cxraug.study.data import load_study_data
from cxraug.study.plan import DataInfo, build_plan
from cxraug.study.protocol import load_protocol
from cxraug.study.runner import run_study
from cxraug.study.units import check_no_synthetic


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


def _proto(tmp_path: Path, cache_dir: Path, **overrides: object):
    return load_protocol(write_protocol(tmp_path / "p.yaml", tiny_protocol(cache_dir, **overrides)))


def test_regime_larger_than_data_rejected_with_numbers(tmp_path: Path, cache_dir: Path) -> None:
    proto = _proto(tmp_path, cache_dir, regimes=[{"name": "big", "n_per_class": 400}])
    with pytest.raises(CxraugError) as exc:
        run_study(proto, tmp_path / "out")
    msg = str(exc.value)
    # 250 phantoms per class: 149 in training (val 15 %, test 25 %)
    assert "regime 'big'" in msg and "COVID: asks 400, the training fold has 149 (val 38, test 63, all 250)" in msg
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written
    capped = _proto(tmp_path, cache_dir, regimes=[{"name": "cap", "cap": {"normal": 999}}])
    with pytest.raises(CxraugError, match="Normal: asks 999, the training fold has"):
        run_study(capped, tmp_path / "out", dry_run=True)


def test_generator_trained_once_and_reused(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxraug.generators.base import Generator

    calls: list[int] = []
    real_fit = Generator.fit

    def counting_fit(self: Generator, *args: object, **kwargs: object):  # noqa: ANN202
        calls.append(1)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(Generator, "fit", counting_fit)
    two = [{"name": "cnn", "model": "custom-cnn", "config": {"epochs": 1, "batch_size": 8}},
           {"name": "cnn-b", "model": "custom-cnn", "config": {"epochs": 2, "batch_size": 8}}]
    out = tmp_path / "out"
    run_study(_proto(tmp_path, cache_dir, classifiers=two), out)
    assert len(calls) == 2  # one unit: one DCGAN per class (2 classes), not one per classifier or seed
    rows = results_without_timing(out)
    gen_units = [r for r in rows if r["kind"] == "generator"]
    users = [r for r in rows if r.get("arm") == "dcgan"]  # generator units have no arm
    assert len(gen_units) == 1 and len(users) == 4
    assert {r["generator_unit"] for r in users} == {gen_units[0]["unit"]}
    # classifier units in results.csv, generator units in generators.csv, PRDC named apart from classifier metrics
    with open(out / "results.csv", newline="") as f:
        assert {r["kind"] for r in csv.DictReader(f)} == {"classifier"}
    with open(out / "generators.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert [r["kind"] for r in reader] == ["generator"]
    columns = set(reader.fieldnames or [])
    assert {"kid", "coverage", "prdc_precision", "prdc_recall", "prdc_density"} <= columns
    assert not columns & {"precision", "recall", "density", "f1", "arm"}
    assert (out / "generator_classes.csv").is_file()
    # a third classifier later: the generator unit (and the finished classifier units) are reused
    three = two + [{"name": "cnn-c", "model": "custom-cnn", "config": {"epochs": 1, "batch_size": 4}}]
    run_study(_proto(tmp_path, cache_dir, classifiers=three), out)
    assert len(calls) == 2
    # 3 classifiers x 4 arms (none, dcgan and the added classical and oversample+fedoruk baselines) x 2 seeds
    assert len([r for r in results_without_timing(out) if r["kind"] == "classifier"]) == 24


def test_canary_synthetic_images_stay_in_training(tmp_path: Path, cache_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import cxraug.classifiers as clf
    import cxraug.study.units

    seen: list[tuple[ImageSet, ImageSet]] = []
    real_train = clf.train_classifier

    def spy(train: ImageSet, val: ImageSet, cfg: object, **kwargs: object):  # noqa: ANN202
        seen.append((train, val))
        return real_train(train, val, cfg, **kwargs)

    monkeypatch.setattr(cxraug.study.units, "train_classifier", spy)
    out = tmp_path / "out"
    run_study(_proto(tmp_path, cache_dir, arms=[
        {"name": "none"}, {"name": "dcgan", "generator": "dcgan", "policy": {"mode": "add", "n_per_class": 12}}],
        generators={"dcgan": {"model": "copy", "config": {"size": 32}}}), out)
    marked = [t for t, _ in seen if t.synthetic.any()]
    assert len(marked) == 2 and all(t.synthetic.sum() == 24 for t in marked)
    for t in marked:  # marked images are exactly the ones named synthetic:...
        assert all(p.startswith("synthetic:") == s for p, s in zip(t.paths, t.synthetic))
    for _, val in seen:
        assert not val.synthetic.any() and not any(p.startswith("synthetic:") for p in val.paths)
    for f in cache_dir.glob("*.npz"):  # the preprocessed-data cache holds real files only
        with np.load(f) as z:
            assert not any(str(p).startswith("synthetic:") for p in z["paths"])
    fake_val = ImageSet(np.zeros((2, 8, 8), np.uint8), [0, 1], ["A", "B"], synthetic=[False, True])
    with pytest.raises(CxraugError, match="1 synthetic image.*validation"):
        check_no_synthetic("validation", fake_val)


def test_external_test_set_mapped_by_name_and_dry_run(tmp_path: Path, cache_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from cxraug.data.phantom import write_phantom_dataset

    ext = write_phantom_dataset(tmp_path / "ext", {"COVID": 6, "Normal": 5, "Lung_Opacity": 4}, size=64, seed=9)
    (ext / "COVID").rename(ext / "covid")  # names match ignoring case; Lung_Opacity is not a study class
    proto = _proto(tmp_path, cache_dir, arms=[{"name": "none"}], generators={},
                   classifiers=[{"name": "cnn", "model": "custom-cnn",
                                 "config": {"epochs": 1, "batch_size": 8}}],
                   repeats={"classifier_seeds": 1})
    run_study(proto, tmp_path / "dry", test_root=str(ext), dry_run=True)
    assert "1 units: 0 generator, 1 classifier" in capsys.readouterr().err
    assert not (tmp_path / "dry").exists()
    run_study(proto, tmp_path / "out", test_root=str(ext))
    meta = json.loads((tmp_path / "out" / "study.json").read_text())
    assert meta["test"] == {"COVID": 6, "Normal": 5} and meta["test_data"] == str(ext)
    (row,) = results_without_timing(tmp_path / "out")
    result = json.loads((tmp_path / "out" / "units" / row["unit"] / "result.json").read_text())
    assert len(result["y_true"]) == 11


def test_an_arm_at_another_image_size_reuses_every_finished_unit(tmp_path: Path, cache_dir: Path) -> None:
    """Unit keys hash only the image sizes a unit reads: adding a 16 px generator arm to a finished 32 px study
    leaves every finished unit's key alone."""
    out = tmp_path / "out"
    run_study(_proto(tmp_path, cache_dir), out)
    before = {p.parent.name for p in (out / "units").glob("*/result.json")}
    arms = tiny_protocol(cache_dir)["arms"] + [{"name": "dcgan16", "generator": "dcgan16",
                                                "policy": {"mode": "add", "n_per_class": 12}}]
    gens = {**tiny_protocol(cache_dir)["generators"]}
    gens["dcgan16"] = {"model": "dcgan", "config": {**gens["dcgan"]["config"], "size": 16}}
    bigger = _proto(tmp_path, cache_dir, arms=arms, generators=gens)
    data = load_study_data(bigger, None, None)
    assert sorted(data.splits) == [16, 32]
    plan = build_plan(complete_arms(bigger, data.classes)[0],
                      DataInfo(fingerprint=data.fingerprint, classes=data.classes, counts=data.counts(32),
                               sizes_fingerprint=data.fingerprints, size=32))
    keys = {u.key for u in plan.units}
    assert before <= keys and len(keys - before) >= 3  # the 16 px generator and its classifier units are new
    new_gen = [u for u in plan.of_kind("generator") if u.key not in before]
    assert len(new_gen) == 1 and new_gen[0].spec.config["size"] == 16


def test_reference_regime_of_one_arm_runs_to_the_report(tmp_path: Path, cache_dir: Path) -> None:
    """A regime that trains only the classical arm (the "more real images" reference) runs end to end: its rows
    appear in results.csv and summary.csv, no comparison is made inside it, and the report builds."""
    from cxraug.report import build_report

    proto = _proto(tmp_path, cache_dir, arms=[{"name": "none"}, {"name": "classical", "classical": "fedoruk"}],
                   regimes=[{"name": "n12", "n_per_class": 12},
                            {"name": "n24", "n_per_class": 24, "arms": ["classical"]}])
    out = tmp_path / "out"
    run_study(proto, out)
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["regime"], r["arm"]) for r in rows) == sorted(
        [("n12", "none")] * 2 + [("n12", "classical")] * 2 + [("n24", "classical")] * 2)
    with open(out / "summary.csv", newline="") as f:
        assert {(r["regime"], r["arm"]) for r in csv.DictReader(f)} == {
            ("n12", "none"), ("n12", "classical"), ("n24", "classical")}
    with open(out / "comparisons.csv", newline="") as f:
        assert {r["regime"] for r in csv.DictReader(f)} == {"n12"}
    assert "n24" in build_report(out).read_text()
