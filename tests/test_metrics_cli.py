"""`cxraug evaluate-images` end to end on a tiny phantom dataset, and TSTR."""

import csv
import json

import numpy as np
import pytest
from metrics_helpers import phantoms
from PIL import Image
from typer.testing import CliRunner

from cxraug.classifiers.train import ClassifierConfig
from cxraug.cli import app
from cxraug.data.phantom import write_phantom_dataset
from cxraug.errors import CxraugError
from cxraug.metrics.tstr import tstr


def _write_fakes(folder, images: np.ndarray, labels: list[str]) -> None:
    folder.mkdir()
    rows = []
    for k, (img, lab) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(folder / f"fake_{k}.png")
        rows.append({"file": f"fake_{k}.png", "label": lab, "seed": 0, "index": k})
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _evaluate_args(tmp_path, data, out, *options: str) -> list[str]:
    """``evaluate-images`` of the fakes in ``tmp_path/fake`` against ``data`` (encoder cached in ``tmp_path/enc``)."""
    return ["evaluate-images", "--real", str(data), "--fake", str(tmp_path / "fake"), *options,
            "--encoder-dir", str(tmp_path / "enc"), "--out", str(out)]


def test_evaluate_images_cli_writes_and_prints_a_report(tmp_path) -> None:
    data = write_phantom_dataset(tmp_path / "data", 14, size=32, classes=["COVID", "Normal"])
    fakes = phantoms(8, 32, seed=3, classes=["COVID", "Normal"])
    _write_fakes(tmp_path / "fake", fakes.images, [fakes.classes[c] for c in fakes.labels])
    out = tmp_path / "report.json"
    args = _evaluate_args(tmp_path, data, out, "--per-class", "--audit", "--encoder-epochs", "1", "--bootstrap", "5")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    printed = json.loads(res.stdout[res.stdout.index("{"):])
    assert printed["overall"]["fid"] == report["overall"]["fid"]
    for block in [report["overall"], *report["per_class"].values()]:
        assert block["extractor"] == "domain" and block["dims"] == 512 and block["n_fake"] > 0
        assert {"fid", "fid_ci", "kid", "kid_sd", "precision", "recall", "density", "coverage", "ssim",
                "ms_ssim", "ms_ssim_scales", "rmse", "sre_db", "image_resize", "feature_resize"} <= set(block)
    assert set(report["per_class"]) == {"COVID", "Normal"} and report["real"]["split"] == "train"
    assert report["overall"]["ms_ssim_scales"] == 2 and "random" in report["overall"]["pairs"]
    mem = report["memorisation"]
    assert len(mem["near_copy"]) == 16 and (tmp_path / "report_closest.png").is_file()
    assert "near_copy" not in printed["memorisation"]
    refused = CliRunner().invoke(app, args[:-2] + ["--real-split", "test"], env={"COLUMNS": "250"})
    assert refused.exit_code == 2 and "'test' is not one of 'train', 'val'" in refused.output  # never test


def test_tstr_uses_the_synthetic_classes_and_refuses_the_test_split() -> None:
    real = phantoms(10, 32, seed=0, classes=["COVID", "Normal", "Lung_Opacity"])
    fake = phantoms(10, 32, seed=1, classes=["Normal", "COVID"])
    cfg = ClassifierConfig(model="custom-cnn", epochs=2, early_stopping=False, precision="32")
    out = tstr(fake, real, real_train=phantoms(10, 32, seed=2, classes=["Normal", "COVID"]), config=cfg)
    assert out["classes"] == ["Normal", "COVID"]
    assert out["tstr"]["n_test"] == 20 and out["trtr"]["n_train"] == 20
    assert 0 <= out["tstr"]["accuracy"] <= 1 and "macro_auc" in out["trtr"]
    real.meta["split_name"] = "test"
    with pytest.raises(CxraugError, match="never the test split"):
        tstr(fake, real, config=cfg)


def test_fake_images_in_any_real_data_layout(tmp_path) -> None:
    """--fake reads every layout --real reads: a Kaggle-layout folder of phantoms (with masks), class folders."""
    from cxraug.metrics.evaluate_images import load_fake_dir

    kaggle = write_phantom_dataset(tmp_path / "kaggle", 6, size=32, classes=["COVID", "Normal"])
    assert (kaggle / "COVID" / "images").is_dir() and (kaggle / "COVID" / "masks").is_dir()
    fakes = load_fake_dir(kaggle)
    assert fakes.classes == ["COVID", "Normal"] and fakes.counts() == {"COVID": 6, "Normal": 6}
    assert all("/images/" in p for p in fakes.paths)  # the masks are not images
    data = write_phantom_dataset(tmp_path / "data", 14, size=32, classes=["COVID", "Normal"])
    res = CliRunner().invoke(app, ["evaluate-images", "--real", str(data), "--fake", str(kaggle), "--per-class",
                                   "--encoder-epochs", "1", "--encoder-dir", str(tmp_path / "enc"), "--bootstrap",
                                   "0", "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["fake"]["counts"] == {"COVID": 6, "Normal": 6} and set(report["per_class"]) == {"COVID", "Normal"}


def test_evaluate_images_filter_writes_the_kept_list(tmp_path) -> None:
    data = write_phantom_dataset(tmp_path / "data", 14, size=32, classes=["COVID", "Normal"])
    good = phantoms(6, 32, seed=3, classes=["COVID", "Normal"])
    noise = np.random.default_rng(0).integers(0, 256, (6, 32, 32), dtype=np.uint8)
    images = np.concatenate([good.images, noise])
    labels = [good.classes[c] for c in good.labels] + ["COVID"] * 6
    _write_fakes(tmp_path / "fake", images, labels)
    out = tmp_path / "report.json"
    args = _evaluate_args(tmp_path, data, out, "--bootstrap", "0", "--encoder-epochs", "6",
                          "--filter", "confidence=0.01,realism=5")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    with open(tmp_path / "report_kept.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18 and {"path", "class", "kept", "probability", "pass_confidence", "pass_realism"} <= set(rows[0])
    assert all(r["kept"] == str(r["pass_confidence"] == r["pass_realism"] == "True") for r in rows)
    report = json.loads(out.read_text())["curation"]
    assert report["kept"] == sum(r["kept"] == "True" for r in rows) and report["of"] == 18
    index = {r["path"].rsplit("fake_", 1)[1].split(".")[0]: r for r in rows}
    assert sum(index[str(k)]["kept"] == "True" for k in range(12, 18)) <= 2  # noise: outside the real k-NN balls
    assert sum(index[str(k)]["kept"] == "True" for k in range(12)) >= 8  # real-like phantoms: inside
    bad_args = [*_evaluate_args(tmp_path, data, out, "--filter", "confidence=2")[:-4],
                "--encoder-dir", str(tmp_path / "enc-bad"), "--out", str(tmp_path / "bad.json")]
    bad = CliRunner().invoke(app, bad_args)
    assert isinstance(bad.exception, CxraugError) and "--filter 'confidence=2': confidence" in str(bad.exception)
    assert not (tmp_path / "enc-bad").exists()  # refused before any encoder is trained
