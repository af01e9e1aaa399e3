"""DDPM edit arms in a study: protocol checks, one edit pool per edit policy, every real training image edited
(labelled with its class, or towards a target), validation/test never edited (canary)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from study_tiny import tiny_protocol, write_protocol

from metrics_helpers import phantoms

from cxraug.augment.synthetic import CurationFilter
from cxraug.errors import CxraugError
from cxraug.study.protocol import load_protocol
from cxraug.study.runner import run_study
from cxraug.study.specs import GeneratorUnitSpec
from cxraug.study.units import curated_pool, run_generator_unit

CLASSES = ["COVID", "Normal"]
DDPM = {"model": "ddpm", "config": {"size": 16, "channels": [8, 16], "attention_levels": [False, True],
                                    "num_head_channels": 8, "norm_num_groups": 4, "batch_size": 8, "steps": 6,
                                    "sample_steps": 3, "checkpoint_every": 6, "sample_every": 6, "log_every": 2},
        "checkpoint": "last"}
EDIT = {"mode": "edit", "per_image": 2, "strength": [0.2, 0.6], "steps": 3}
TOWARDS = {"mode": "edit", "per_image": 1, "strength": 0.5, "steps": 3, "target": "COVID"}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_only_diffusion_models_edit_and_edit_policies_are_checked(tmp_path):
    raw = tiny_protocol(tmp_path / "cache", arms=[{"name": "e", "generator": "dcgan", "policy": EDIT}])
    with pytest.raises(CxraugError, match="edit needs a conditional diffusion model"):
        load_protocol(write_protocol(tmp_path / "p.yaml", raw))
    for bad, match in (({"mode": "edit", "strength": 0.5}, "per_image"),
                       ({**EDIT, "strength": [0.6, 0.2]}, "strength"),
                       ({"mode": "add", "n_per_class": 3, "per_image": 2}, "only apply to mode 'edit'")):
        raw = tiny_protocol(tmp_path / "cache", arms=[{"name": "e", "generator": "ddpm", "policy": bad}],
                            generators={"ddpm": DDPM})
        with pytest.raises(CxraugError, match=match):
            load_protocol(write_protocol(tmp_path / "p.yaml", raw))


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edits")
    raw = tiny_protocol(tmp_path_factory.getbasetemp() / "phantom-cache", arms=[
        {"name": "none"},
        {"name": "edit", "generator": "ddpm", "policy": EDIT, "classical": "flip", "synthetic_weight": 0.5},
        {"name": "towards", "generator": "ddpm", "policy": TOWARDS},
    ], generators={"ddpm": DDPM}, repeats={"classifier_seeds": 1},
        classifiers=[{"name": "cnn", "model": "custom-cnn", "config": {"epochs": 1, "batch_size": 8}}])
    out = tmp / "out"
    run_study(load_protocol(write_protocol(tmp / "p.yaml", raw)), out)
    return out


def _generator_result(out):
    (row,) = _rows(out / "generators.csv")
    return json.loads((out / "units" / row["unit"] / "result.json").read_text()), row["unit"]


def test_edit_arms_take_their_own_pools_of_every_training_image(edited):
    rows = {r["arm"]: r for r in _rows(edited / "results.csv") if r["kind"] == "classifier"}
    assert int(rows["edit"]["n_synthetic"]) == 2 * 24  # 2 edits of each of the 12 + 12 real training images
    assert int(rows["towards"]["n_synthetic"]) == 12  # one edit of each Normal image, labelled COVID
    assert int(rows["none"]["n_synthetic"]) == 0
    result, _ = _generator_result(edited)
    records = list(result["edits"].values())
    assert len(records) == 2
    plain = next(r for r in records if r["policy"]["target"] is None)["classes"]
    assert {c: (r["sources"], r["edits"]) for c, r in plain.items()} == {"COVID": (12, 24), "Normal": (12, 24)}
    strengths = np.array(plain["COVID"]["strengths"])
    assert 0.2 <= strengths.min() < strengths.max() <= 0.6  # drawn per edit from the range
    audited = next(r for r in records if r["policy"]["target"] is None)["audit"]  # memorisation is on by default
    assert audited["dropped"] == 0 and np.isfinite([audited["source_distance"], audited["other_distance"]]).all()
    towards = next(r for r in records if r["policy"]["target"] == "COVID")["classes"]
    assert list(towards) == ["COVID"] and towards["COVID"]["source_classes"] == ["Normal"]
    assert towards["COVID"]["target"] == "COVID"
    # the oversample baseline added for the edit arm repeats each edited real image per_image times
    assert int(rows["oversample+flip"]["n_synthetic"]) == 0 and int(rows["oversample+flip"]["n_train"]) == 72


def test_validation_and_test_images_are_never_edited(edited, tmp_path):
    """Every recorded source is a training image; a canary added only to validation changes no edit pool."""
    result, _ = _generator_result(edited)
    spec = GeneratorUnitSpec.model_validate(result["spec"])
    train = phantoms(12, size=16, seed=0, classes=CLASSES)  # the study hands a generator unit its own size
    val = phantoms(4, size=16, seed=5, classes=CLASSES)
    canary = val.concat(phantoms(3, size=16, seed=9, classes=CLASSES))
    a = run_generator_unit(spec, train, val, str(tmp_path / "a"), 1, "cpu", None)
    b = run_generator_unit(spec, train, canary, str(tmp_path / "b"), 1, "cpu", None)
    for k in a["pool"]:
        np.testing.assert_array_equal(a["pool"][k], b["pool"][k])
    for rec in a["edits"].values():
        for c in rec["classes"].values():
            assert set(c["source_paths"]) <= set(train.paths)
            assert not set(c["source_paths"]) & set(canary.paths)
    pool = curated_pool(a["pool"], spec.edits[0].key, CLASSES, {})
    assert len(pool) == sum(len(c["source_paths"]) for c in a["edits"][spec.edits[0].key]["classes"].values())


class CopyingEditor:
    """A planted editor: even edits return their source, odd ones the *next* source (another training image)."""

    name, kind, preprocess, target_class = "copier", "conditional", {}, None

    def __init__(self, classes, size):
        self.classes, self.config = classes, type("C", (), {"size": size})()

    def edit(self, images, labels, strength, steps=None, guidance=None, seed=0):
        out = images.copy()
        out[1::2] = np.roll(images, -1, axis=0)[1::2]
        return out


def test_the_near_copy_gate_drops_edits_that_copy_other_training_images(edited):
    from cxraug.study.edited import edit_pools
    from cxraug.study.units import pool_to_arrays

    result, _ = _generator_result(edited)
    spec = GeneratorUnitSpec.model_validate(result["spec"])
    plain = next(p for p in spec.edits if p.target is None).model_copy(update={"per_image": 1})
    train, val = phantoms(12, size=16, seed=0, classes=CLASSES), phantoms(6, size=16, seed=5, classes=CLASSES)
    model = CopyingEditor(CLASSES, 16)
    arrays, record, curation = edit_pools(spec.model_copy(update={"edits": [plain], "drop_near_copies": True}),
                                          model, train, val, None, pool_to_arrays)
    assert curation == {}  # no filter: no curation record
    audit = record[plain.key]["audit"]
    assert audit["dropped"] == audit["flagged"] == 12  # the 6 odd edits of each class
    pool = curated_pool(arrays, plain.key, CLASSES, {})
    assert len(pool) == 12
    np.testing.assert_array_equal(pool.images, train.images[0::2])  # the survivors are the own-source edits
    shown = curated_pool(arrays, plain.key, CLASSES, {}, kind="source_")
    np.testing.assert_array_equal(shown.images, pool.images)  # report pairs: each edit beside its source
    kept, _, _ = edit_pools(spec.model_copy(update={"edits": [plain], "drop_near_copies": False}), model, train,
                            val, None, pool_to_arrays)
    assert len(kept[f"{plain.key}__images"]) == 24  # without the gate every edit stays


def test_report_shows_source_edit_pairs_and_both_distances(edited):
    html = (edited / "report.html").read_text()
    assert html.count("<h4>Edits e") == 2 and "distance to others" in html and "towards COVID" in html
    assert html.count('alt="source Normal"') == 1 and html.count('alt="edit Normal"') == 1  # the plain policy
    assert html.count('alt="source COVID"') == 2 and html.count('alt="edit COVID"') == 2  # plain + towards


class StrengthEditor(CopyingEditor):
    """A planted editor: an edit below strength 0.4 returns its source, a stronger one a black image."""

    def edit(self, images, labels, strength, steps=None, guidance=None, seed=0):
        out = images.copy()
        out[np.asarray(strength) >= 0.4] = 0
        return out


class BrightnessJudge:
    """A planted judge: sure of the intended class for any image that is not black, features = mean intensity."""

    record = {"hash": "planted", "config": {"epochs": 0}, "train_counts": {}}

    def proba(self, images):
        sure = (images.reshape(len(images), -1).mean(1) > 1).astype(float)
        return np.stack([sure, sure], 1)

    def features(self, images):
        return images.reshape(len(images), -1).mean(1, keepdims=True).astype(np.float32)


def test_a_filter_on_edits_keeps_the_passing_edits_of_training_sources(edited, monkeypatch):
    from cxraug.study import edited as edited_mod
    from cxraug.study.edited import edit_pools
    from cxraug.study.units import curation_summary, pool_to_arrays

    result, _ = _generator_result(edited)
    spec = GeneratorUnitSpec.model_validate(result["spec"])
    policy = next(p for p in spec.edits if p.target is None).model_copy(update={
        "per_image": 1, "filter": CurationFilter(confidence=0.5, max_draw=8)})
    train, val = phantoms(12, size=16, seed=0, classes=CLASSES), phantoms(6, size=16, seed=5, classes=CLASSES)
    monkeypatch.setattr(edited_mod, "trained_judge", lambda config, tr, va, cache: (
        BrightnessJudge(), {"hash": "planted", "val_accuracy": 1.0}))
    arrays, record, curation = edit_pools(spec.model_copy(update={"edits": [policy]}), StrengthEditor(CLASSES, 16),
                                          train, val, None, pool_to_arrays)
    pool = curated_pool(arrays, policy.key, CLASSES, {})
    assert len(pool) == 24 and (pool.images.reshape(24, -1).mean(1) > 1).all()  # only the weak (kept) edits
    for c, rec in record[policy.key]["classes"].items():
        assert rec["edits"] == 12 and max(rec["strengths"]) < 0.4  # strengths of the kept edits only
        assert set(rec["source_paths"]) <= set(train.paths)
        cur = curation[policy.key]["classes"][c]
        assert cur["kept"] == cur["needed"] == 12 and cur["drawn"] > 12 and cur["rejected_confidence"] > 0
    aug = train.concat(pool)
    summary = curation_summary(curation[policy.key], aug, policy, train)
    assert summary["short"] == {} and 0 < summary["kept_fraction"] < 1
    # too strict a filter: a short pool, said so (never a silent short arm)
    monkeypatch.setattr(StrengthEditor, "edit", lambda self, images, *a, **k: np.zeros_like(images))
    strict = policy.model_copy(update={"filter": CurationFilter(confidence=0.5, max_draw=2)})
    arrays, _, curation = edit_pools(spec.model_copy(update={"edits": [strict]}), StrengthEditor(CLASSES, 16),
                                     train, val, None, pool_to_arrays)
    short = curation_summary(curation[strict.key], train.concat(curated_pool(arrays, strict.key, CLASSES, {})),
                             strict, train)["short"]
    assert short == {"COVID": {"wanted": 12, "got": 0}, "Normal": {"wanted": 12, "got": 0}}


def test_an_edit_arms_filter_goes_with_its_edit_pool_not_the_free_sample_pools(tmp_path):
    from cxraug.study.baselines import complete_arms
    from cxraug.study.data import load_study_data
    from cxraug.study.plan import DataInfo, build_plan

    curated = {**EDIT, "filter": {"confidence": 0.6, "realism": 3}}
    raw = tiny_protocol(tmp_path / "cache", arms=[{"name": "none"}, {"name": "e", "generator": "ddpm",
                                                                     "policy": curated}],
                        generators={"ddpm": DDPM}, training={"add_baselines": False})
    proto = load_protocol(write_protocol(tmp_path / "p.yaml", raw))
    data = load_study_data(proto, None, None)
    proto, _ = complete_arms(proto, data.classes)
    plan = build_plan(proto, DataInfo(fingerprint=data.fingerprint, classes=data.classes, counts=data.counts(32)))
    (gen,) = plan.of_kind("generator")
    assert gen.spec.curations == [] and gen.spec.pool == {}
    assert [p.filter.confidence for p in gen.spec.edits] == [0.6]
