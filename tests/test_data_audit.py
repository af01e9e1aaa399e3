"""Data audit: exact/near duplicates, cross-split leakage warnings, class/source shortcut warnings, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_helpers import blob_image, class_folders, save_png, write_csv
from PIL import Image
from typer.testing import CliRunner

from cxraug.cli import app
from cxraug.data import PreprocessConfig, inspect_dataset, load_imageset, near_duplicate_groups, split_patients
from cxraug.data.audit import confounds, print_report


def _with_copies(root: Path) -> dict[str, str]:
    """Eight distinct 64 px images per class plus four kinds of copies of A_0; returns copy -> original."""
    class_folders(root, {"A": 8, "B": 8}, size=64)
    original = root / "A" / "A_0.png"
    pixels = np.asarray(Image.open(original))
    shutil.copy(original, root / "B" / "exact.png")
    save_png(root / "B" / "resized.png", np.asarray(Image.fromarray(pixels).resize((40, 40), Image.LANCZOS)))
    Image.fromarray(pixels).save(root / "B" / "reencoded.jpg", quality=60)
    save_png(root / "B" / "shifted.png", np.pad(pixels, ((2, 0), (2, 0)), mode="edge")[:64, :64])
    return {name: str(original) for name in ("resized.png", "reencoded.jpg", "shifted.png")}


def test_exact_and_near_duplicates_are_found_without_false_pairs(tmp_path: Path) -> None:
    root = tmp_path / "d"
    near = _with_copies(root)
    report = inspect_dataset(root)
    dup = report["duplicates"]
    assert [(Path(p["a"]).name, Path(p["b"]).name) for p in dup["exact"]] == [("A_0.png", "exact.png")]
    family = {"A_0.png", "exact.png", *near}
    pairs = [{Path(p["a"]).name, Path(p["b"]).name} for p in dup["near"]]
    assert all(pair <= family for pair in pairs), pairs  # no pair outside the copies of A_0
    assert all({"A_0.png", copy} in pairs for copy in near)  # every kind of copy is found


def test_near_duplicate_grouping_keeps_copies_in_one_split(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _with_copies(root)
    images, _ = load_imageset(root, preprocess=PreprocessConfig(size=32))
    groups = near_duplicate_groups(images)
    copies = [i for i, p in enumerate(images.paths) if Path(p).stem in ("A_0", "exact", "resized", "reencoded",
                                                                          "shifted")]
    assert len(set(groups[copies])) == 1 and len(set(groups)) == len(images) - 4
    for seed in range(5):
        splits = split_patients(images, 0.3, 0.3, seed, near_duplicates=True)
        holding = [s for s in (splits.train, splits.val, splits.test) if set(s.paths) & {images.paths[i] for i in copies}]
        assert len(holding) == 1


def _manifest(root: Path, plant_duplicate: bool, plant_patient: bool) -> Path:
    rows = []
    for k in range(12):
        save_png(root / f"{k}.png", blob_image(k, 32))
        rows.append({"path": f"{k}.png", "label": "A" if k % 2 else "B", "patient_id": f"p{k}",
                     "split": ["train", "val", "test"][k % 3]})
    if plant_duplicate:  # image 0 (train) copied into test under another patient
        shutil.copy(root / "0.png", root / "copy.png")
        rows.append({"path": "copy.png", "label": "B", "patient_id": "p99", "split": "test"})
    if plant_patient:
        rows[3]["patient_id"] = "p1"  # p1 in val (row 1) and train (row 3)
    return write_csv(root / "manifest.csv", rows)


def test_planted_cross_split_duplicate_and_patient_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = inspect_dataset(_manifest(tmp_path / "clean", False, False))
    assert clean["split"]["source"] == "manifest" and not [w for w in clean["warnings"] if "LEAKAGE" in w]
    dup = inspect_dataset(_manifest(tmp_path / "dup", True, False))
    assert dup["leakage"]["n_duplicates_crossing"] == 1 and dup["leakage"]["n_patients_crossing"] == 0
    assert any("LEAKAGE" in w and "copy.png" in w for w in dup["warnings"])
    print_report(dup)
    assert "copy.png [test]" in " ".join(capsys.readouterr().err.split())  # split names survive Rich markup
    pat = inspect_dataset(_manifest(tmp_path / "pat", False, True))
    assert pat["leakage"]["patients"] == [{"patient_id": "p1", "splits": ["train", "val"]}]
    assert any("LEAKAGE" in w and "p1" in w for w in pat["warnings"])


def test_class_source_confound_warns_and_balanced_does_not() -> None:
    labels = ["COVID"] * 50 + ["Normal"] * 50
    confounded = ["hospital1"] * 48 + ["hospital2"] * 2 + ["hospital2"] * 50
    table, warnings = confounds(labels, confounded, "source_repo")
    assert table["COVID"] == {"hospital1": 48, "hospital2": 2}
    assert len(warnings) == 2 and "96% of COVID images have source_repo=hospital1 (vs 0%" in warnings[0]
    assert "100% of Normal images have source_repo=hospital2 (vs 4%" in warnings[1]
    balanced = ["hospital1", "hospital2"] * 50
    assert confounds(labels, balanced, "source_repo")[1] == []
    one_source = ["hospital1"] * 100  # everything from one place: nothing to tell the classes apart by
    assert confounds(labels, one_source, "source_repo")[1] == []


def test_inspect_reads_metadata_columns_and_warns(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d", {"COVID": 6, "Viral": 6})
    rows = [{"id": f"{c}_{k}", "patient_id": "", "population": "adult" if c == "COVID" else "pediatric",
             "source_repo": f"r{k % 2}"} for c in ("COVID", "Viral") for k in range(6)]
    write_csv(root / "metadata.csv", rows)
    report = inspect_dataset(root)
    assert report["confounds"]["population"]["table"]["Viral"] == {"pediatric": 6}
    assert len(report["confounds"]["population"]["warnings"]) == 2
    assert report["confounds"]["source_repo"]["warnings"] == []


def test_cli_inspect_json_is_one_object(tmp_path: Path) -> None:
    root = class_folders(tmp_path / ("long_folder_name_" * 5) / "d", {"A": 3, "B": 2})  # path > 80 columns
    (root / "B" / "zero.png").write_bytes(b"")
    result = CliRunner().invoke(app, ["data", "inspect", str(root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["classes"] == {"A": 3, "B": 2} and report["n_usable"] == 5
    assert report["skipped"] == [{"path": str(root / "B" / "zero.png"), "reason": "empty file (0 bytes)"}]
    human = CliRunner().invoke(app, ["data", "inspect", str(root)])
    assert human.exit_code == 0 and str(root / "B" / "zero.png") in human.output  # long paths are not wrapped
