"""The built-in phantom dataset (synthetic test data, not medical data)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage
from typer.testing import CliRunner

from cxraug.cli import app
from cxraug.data import PreprocessConfig, load_imageset
from cxraug.data.phantom import (
    PHANTOM_CLASSES,
    draw_paired,
    draw_phantoms,
    phantom_root,
    write_phantom_dataset,
)
from cxraug.errors import CxraugError


def _digest(*arrays: np.ndarray) -> str:
    return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()


def test_same_seed_same_bytes_other_seed_differs() -> None:
    for label in PHANTOM_CLASSES:
        a = draw_phantoms(label, 6, 48, seed=3)
        assert _digest(*a) == _digest(*draw_phantoms(label, 6, 48, seed=3))
        assert _digest(*a) != _digest(*draw_phantoms(label, 6, 48, seed=4))


def test_prefix_stable_and_names_matched_loosely() -> None:
    few = draw_phantoms("Viral Pneumonia", 5, 32, seed=1)
    many = draw_phantoms("viral_pneumonia", 70, 32, seed=1)  # crosses a render chunk
    assert np.array_equal(few[0], many[0][:5]) and np.array_equal(few[1], many[1][:5])
    with pytest.raises(CxraugError, match="unknown class"):
        draw_phantoms("Bacterial", 1)


@pytest.mark.parametrize("size", [16, 64, 100])
def test_shapes_dtypes_and_two_lungs_inside_the_body(size: int) -> None:
    images, masks = draw_phantoms("COVID", 8, size, seed=0)
    assert images.shape == masks.shape == (8, size, size)
    assert images.dtype == masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 255}
    border = np.ones((size, size), bool)
    border[2:-2, 2:-2] = False
    for image, mask in zip(images, masks):
        lung = mask > 0
        assert 0.12 < lung.mean() < 0.45
        assert not lung[border].any()
        if size >= 64:
            assert ndimage.label(lung)[1] == 2
        # Lungs are dark air inside brighter tissue; the image corners are outside the body (dark).
        body = image[~lung & ~border]
        assert image[lung].mean() < np.median(body)
        corners = np.concatenate([image[:2, :2].ravel(), image[:2, -2:].ravel()])
        assert corners.mean() < image[lung].mean() + 20


def test_lesions_brighten_the_lungs_and_severity_zero_is_normal() -> None:
    paired = draw_paired(PHANTOM_CLASSES, 16, 64, seed=2, severity=1.0)
    normal, lungs = paired["Normal"][0].astype(float), paired["Normal"][1] > 0
    for label in ("COVID", "Viral Pneumonia", "Lung_Opacity"):
        diff = paired[label][0].astype(float) - normal
        assert diff[lungs].mean() > 2.0, label
    flat = draw_paired(["Normal", "COVID"], 4, 64, seed=2, severity=0.0)
    assert np.array_equal(flat["Normal"][0], flat["COVID"][0])


def test_paired_phantoms_share_anatomy_and_differ_only_in_the_lungs() -> None:
    pairs = draw_paired(["Normal", "COVID", "Lung Opacity"], 12, 64, seed=5)
    normal_img, normal_mask = pairs["Normal"]
    near_lungs = ndimage.binary_dilation(normal_mask > 0, structure=np.ones((1, 5, 5)))
    for label in ("COVID", "Lung Opacity"):
        img, mask = pairs[label]
        assert np.array_equal(mask, normal_mask)
        differ = img != normal_img
        assert differ.any(axis=(1, 2)).all()  # every pair shows its lesion
        assert not (differ & ~near_lungs).any()
    # Without a shared anatomy seed, classes are different patients.
    assert not np.array_equal(draw_phantoms("COVID", 4, 64, 5)[1], draw_phantoms("Normal", 4, 64, 5)[1])


def test_kaggle_layout_written_atomically_with_imbalanced_counts(tmp_path: Path) -> None:
    out = write_phantom_dataset(tmp_path / "ph", {"covid": 3, "Normal": 5, "viral pneumonia": 0}, size=40, seed=1,
                                classes=["COVID", "Normal", "Viral Pneumonia"])
    assert sorted(p.name for p in out.iterdir()) == ["COVID", "Normal", "README.txt", "phantom.json"]
    assert "NOT MEDICAL DATA" in (out / "README.txt").read_text()
    assert json.loads((out / "phantom.json").read_text())["counts"] == {"COVID": 3, "Normal": 5,
                                                                        "Viral Pneumonia": 0}
    images, masks = draw_phantoms("Normal", 5, 40, seed=1)
    for k in range(5):
        assert np.array_equal(cv2.imread(str(out / "Normal" / "images" / f"Normal-{k + 1}.png"), 0), images[k])
        assert np.array_equal(cv2.imread(str(out / "Normal" / "masks" / f"Normal-{k + 1}.png"), 0), masks[k])
    assert len(list((out / "COVID" / "masks").glob("*.png"))) == 3
    loaded, skipped = load_imageset(out, preprocess=PreprocessConfig(size=40))
    assert loaded.counts() == {"COVID": 3, "Normal": 5} and not skipped
    assert [p.name for p in tmp_path.iterdir()] == ["ph"]  # no temporary folder left behind
    with pytest.raises(CxraugError, match="already exists"):
        write_phantom_dataset(out, 1, size=40)
    with pytest.raises(CxraugError, match="not selected"):
        write_phantom_dataset(tmp_path / "other", {"Lung_Opacity": 2}, classes=["COVID"])


def test_phantom_root_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXRAUG_CACHE", str(tmp_path))
    root = phantom_root(n_per_class=2, size=32)
    assert root.is_relative_to(tmp_path)
    assert len(list(root.glob("*/images/*.png"))) == 8
    stamp = (root / "phantom.json").stat().st_mtime_ns
    assert phantom_root(n_per_class=2, size=32) == root
    assert (root / "phantom.json").stat().st_mtime_ns == stamp


def test_cli_writes_the_dataset(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["data", "phantom", "--out", str(out), "--n-per-class", "COVID=2,Normal=3",
                                 "--size", "32", "--seed", "7", "--severity", "0.8"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "COVID" / "images").glob("*.png"))) == 2
    assert len(list((out / "Normal" / "masks").glob("*.png"))) == 3
    assert not (out / "Lung_Opacity").exists()
    assert json.loads((out / "phantom.json").read_text())["severity"] == 0.8
    result = runner.invoke(app, ["data", "phantom", "--out", str(tmp_path / "x"), "--n-per-class", "many"])
    assert result.exit_code != 0


class _TinyCNN(torch.nn.Module):
    def __init__(self, n_classes: int) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
            layers += [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.BatchNorm2d(c_out), torch.nn.ReLU(),
                       torch.nn.MaxPool2d(2)]
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(64 * 4 * 4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def _phantom_set(n: int, seed: int, severity: float) -> tuple[torch.Tensor, torch.Tensor]:
    images = [draw_phantoms(c, n, 32, seed=seed, severity=severity)[0] for c in PHANTOM_CLASSES]
    x = torch.as_tensor(np.concatenate(images)).float().div(127.5).sub(1.0).unsqueeze(1)
    y = torch.arange(len(PHANTOM_CLASSES)).repeat_interleave(n)
    return x, y


def cnn_accuracy(severity: float, n_train: int = 200, n_test: int = 200, epochs: int = 30) -> float:
    """Test accuracy of a tiny CNN trained on 32 px phantoms (train seed 0, test seed 1: other patients)."""
    torch.manual_seed(0)
    x, y = _phantom_set(n_train, 0, severity)
    x_test, y_test = _phantom_set(n_test, 1, severity)
    model = _TinyCNN(len(PHANTOM_CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(x_test).argmax(1) == y_test).float().mean())


@pytest.mark.slow
def test_phantom_classes_learnable_but_not_trivially_separable() -> None:
    acc = cnn_accuracy(0.5)  # measured 0.675 (chance 0.25); 0.25 at severity 0, 0.85 at severity 1
    assert 0.5 < acc < 0.9, acc
