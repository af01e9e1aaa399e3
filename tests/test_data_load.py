"""Layouts (Kaggle with masks, flat Kaggle, class folders, manifest, metadata.csv join), loading, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from data_helpers import blob_image, class_folders, save_png, write_csv, write_dicom

from cxraug.data import (PreprocessConfig, image_meta_column, load_imageset, load_splits, skipped_summary,
                         write_skipped)
from cxraug.data.layouts import detect_layout, discover
from cxraug.errors import CxraugError

SMALL = PreprocessConfig(size=16)


def _kaggle(root: Path, n: int = 3) -> Path:
    """Kaggle layout: 32 px images, 24 px masks marking the right half."""
    for c, label in enumerate(["COVID", "Normal", "Viral Pneumonia"]):
        for k in range(n):
            save_png(root / label / "images" / f"{label}-{k}.png", blob_image(10 * c + k, 32))
            mask = np.zeros((24, 24), np.uint8)
            mask[:, 12:] = 255
            save_png(root / label / "masks" / f"{label}-{k}.png", mask)
    return root


def test_kaggle_layout_with_masks_resized_and_cropped(tmp_path: Path) -> None:
    root = _kaggle(tmp_path / "kaggle")
    assert detect_layout(root) == "kaggle"
    found = discover(root)
    assert all(r.mask_path is not None for r in found.records)
    plain, _ = load_imageset(root, preprocess=PreprocessConfig(size=16))
    cropped, _ = load_imageset(root, preprocess=PreprocessConfig(size=16, mask_crop=True, crop_margin=0.0))
    assert plain.classes == ["COVID", "Normal", "Viral Pneumonia"] and plain.counts()["Normal"] == 3
    # the 24 px mask covers the right half of the 32 px image: the crop is that half stretched to 16x16
    src = blob_image(0, 32)
    right = src[:, 16:].reshape(16, 2, 16, 1).mean(axis=(1, 3))
    i = plain.paths.index(str(root / "COVID" / "images" / "COVID-0.png"))
    assert np.abs(cropped.images[i].astype(float) - right).max() <= 2
    assert not np.array_equal(cropped.images[i], plain.images[i])


def test_a_folder_named_two_ways_gives_the_same_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = class_folders(tmp_path / "data" / "flat", {"COVID": 2, "Normal": 2})
    absolute, _ = load_imageset(root, preprocess=SMALL)
    monkeypatch.chdir(tmp_path / "data")
    relative, _ = load_imageset("../data/./flat", preprocess=SMALL)
    assert relative.paths == absolute.paths and all(Path(p).is_absolute() for p in relative.paths)
    assert list(relative.patient_ids) == list(absolute.patient_ids)  # ids made from paths: the same split


def test_flat_kaggle_and_class_folders_with_every_extension(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "flat", {"COVID": 2, "Normal": 2})
    for ext in (".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        save_png(root / "Normal" / f"extra{ext}", blob_image(99, 24))
    write_dicom(root / "COVID" / "scan.dcm", np.arange(24 * 24, dtype=np.uint16).reshape(24, 24))
    (root / "COVID" / "readme.txt").write_text("notes")
    assert detect_layout(root) == "folders"
    images, skipped = load_imageset(root, preprocess=SMALL)
    assert images.counts() == {"COVID": 3, "Normal": 7}
    assert images.images.shape == (10, 16, 16) and images.images.dtype == np.uint8
    assert [s["path"] for s in skipped] == [str(root / "COVID" / "readme.txt")]
    assert list(images.patient_ids) == images.paths  # no ids: each image is its own patient


def test_manifest_with_relative_paths_patients_masks_and_split(tmp_path: Path) -> None:
    root = tmp_path / "m"
    rows = []
    for k in range(6):
        save_png(root / "img" / f"{k}.png", blob_image(k, 24))
        mask = np.zeros((24, 24), np.uint8)
        mask[4:20, 4:20] = 1
        save_png(root / "masks" / f"{k}.png", mask)
        rows.append({"path": f"img/{k}.png", "label": "covid" if k < 3 else "normal", "patient_id": f"p{k // 2}",
                     "mask_path": f"masks/{k}.png", "split": ["train", "val", "test"][k // 2], "site": f"s{k % 2}"})
    manifest = write_csv(root / "manifest.csv", rows)
    assert detect_layout(root) == "manifest" and detect_layout(manifest) == "manifest"
    images, _ = load_imageset(manifest, preprocess=PreprocessConfig(size=16, mask_crop=True))
    assert images.counts() == {"covid": 3, "normal": 3}
    assert list(images.patient_ids) == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert images.meta["split"][str(root / "img" / "5.png")] == "test"
    assert list(image_meta_column(images, "site")) == ["s0", "s1"] * 3


def test_manifest_unknown_split_is_an_error(tmp_path: Path) -> None:
    save_png(tmp_path / "a.png", blob_image(1, 16))
    write_csv(tmp_path / "list.csv", [{"path": "a.png", "label": "x", "split": "holdout"}])
    with pytest.raises(CxraugError, match="line 2.*holdout"):
        load_imageset(tmp_path, preprocess=SMALL)


def test_metadata_csv_join_by_file_stem(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d", {"COVID": 3, "Normal": 2})
    rows = [{"id": "COVID_0", "class": "COVID", "patient_id": "P1", "population": "adult", "source_repo": "r1"},
            {"id": "COVID_1", "class": "COVID", "patient_id": "P1", "population": "adult", "source_repo": "r1"},
            {"id": "Normal_0", "class": "Normal", "patient_id": "", "population": "pediatric", "source_repo": "r2"}]
    write_csv(root / "metadata.csv", rows)
    images, _ = load_imageset(root, preprocess=SMALL)
    assert len(np.unique(images.patient_ids.astype(str))) == 4  # P1 twice + 3 own groups
    pop = dict(zip(images.paths, image_meta_column(images, "population")))
    assert pop[str(root / "Normal" / "Normal_0.png")] == "pediatric"
    assert pop[str(root / "Normal" / "Normal_1.png")] == ""
    sub = images.subset([0])  # per-image metadata is keyed by path, so it survives subsetting
    assert image_meta_column(sub, "source_repo")[0] == "r1"


def test_class_selection_and_merging_by_name(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d", {"COVID": 2, "Normal": 2, "Viral_Pneumonia": 1,
                                          "Bacterial Pneumonia": 2, "Lung_Opacity": 1})
    images, _ = load_imageset(root, preprocess=SMALL, classes=["normal", "covid", "PNEUMONIA"],
                              merge={"Pneumonia": ["viral pneumonia", "bacterial-pneumonia"]})
    assert images.classes == ["Normal", "COVID", "Pneumonia"]
    assert images.counts() == {"Normal": 2, "COVID": 2, "Pneumonia": 3}
    with pytest.raises(CxraugError, match="unknown class 'Opacity'"):
        load_imageset(root, preprocess=SMALL, classes=["Opacity"])


def test_missing_and_empty_roots_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CxraugError, match="does not exist.*nowhere"):
        load_imageset(tmp_path / "nowhere", preprocess=SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CxraugError, match="empty dataset root"):
        load_imageset(tmp_path / "empty", preprocess=SMALL)


def test_class_without_usable_images_names_the_class(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d", {"COVID": 2})
    (root / "Normal").mkdir()
    (root / "Normal" / "broken.png").write_bytes(b"")
    with pytest.raises(CxraugError, match="class 'Normal' has no usable images"):
        load_imageset(root, preprocess=SMALL)
    images, _ = load_imageset(root, preprocess=SMALL, classes=["COVID"])  # deselecting it is fine
    assert images.classes == ["COVID"]


def test_bad_files_are_skipped_listed_and_written(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d", {"COVID": 2, "Normal": 2})
    (root / "COVID" / "zero.png").write_bytes(b"")
    (root / "Normal" / "text.jpg").write_text("not an image")
    images, skipped = load_imageset(root, preprocess=SMALL)
    assert len(images) == 4
    assert {Path(s["path"]).name: s["reason"].split(" ")[0] for s in skipped} == {"zero.png": "empty",
                                                                                "text.jpg": "not"}
    assert skipped_summary(skipped, 6) == ("skipped 2 of 6 files (1 empty file (0 bytes), "
                                           "1 not an image (format not recognised))")
    write_skipped(tmp_path / "out" / "skipped.csv", skipped)
    with open(tmp_path / "out" / "skipped.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [s["path"] for s in skipped] and all(r["reason"] for r in rows)


def test_load_splits_in_one_call(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d", {"COVID": 10, "Normal": 10})
    (root / "Normal" / "zero.png").write_bytes(b"")
    splits = load_splits(root, val_frac=0.2, test_frac=0.2, seed=1, preprocess=SMALL, classes=["Normal", "COVID"])
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [12, 4, 4]
    assert splits.train.classes == ["Normal", "COVID"] and splits.test.counts() == {"Normal": 2, "COVID": 2}
    assert [Path(s["path"]).name for s in splits.skipped] == ["zero.png"]


def test_forced_layout_and_unknown_layout(tmp_path: Path) -> None:
    root = _kaggle(tmp_path / "k", n=1)
    images, _ = load_imageset(root, layout="kaggle", preprocess=SMALL)
    assert len(images) == 3
    with pytest.raises(CxraugError, match="unknown layout 'zip'"):
        load_imageset(root, layout="zip", preprocess=SMALL)


def test_preprocess_settings_recorded_in_meta(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "d", {"A": 1, "B": 1})
    images, _ = load_imageset(root, preprocess=PreprocessConfig(size=20, clahe=True))
    assert images.meta["preprocess"]["size"] == 20 and images.meta["preprocess"]["clahe"] is True
    assert images.meta["data"] == str(root) and images.size == 20


def test_dev_set_metadata_join_gives_2913_patient_groups(dev_data: str) -> None:
    found = discover(dev_data)
    assert len(found.records) == 4742
    groups = {r.patient_id or str(r.path) for r in found.records}
    assert len(groups) == 2913
    assert {r.meta["population"] for r in found.records} >= {"adult", "pediatric"}
