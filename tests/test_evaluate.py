"""Evaluation metrics equal scikit-learn's on fixed predictions, including a class that is never predicted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, matthews_corrcoef, precision_score,
                             recall_score, roc_auc_score)

from cxraug.classifiers.evaluate import (CONFUSION_METRICS, confusion_batch, metrics_from_confusion,
                                        metrics_from_predictions, save_confusion_png)

CLASSES = ["COVID", "Normal", "Viral_Pneumonia"]


@pytest.fixture
def fixed() -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities where class 2 is present but never predicted."""
    rng = np.random.default_rng(3)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2])
    prob = rng.dirichlet([1, 1, 1], size=len(y))
    prob[:, 2] *= 0.01  # never the argmax
    prob /= prob.sum(1, keepdims=True)
    return y, prob


def test_metrics_equal_sklearn(fixed) -> None:
    y, prob = fixed
    pred = prob.argmax(1)
    assert 2 not in pred
    m = metrics_from_predictions(y, prob, CLASSES)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, pred))
    for avg in ("macro", "weighted"):
        assert m[f"{avg}_precision"] == pytest.approx(precision_score(y, pred, average=avg, zero_division=0))
        assert m[f"{avg}_recall"] == pytest.approx(recall_score(y, pred, average=avg, zero_division=0))
        assert m[f"{avg}_f1"] == pytest.approx(f1_score(y, pred, average=avg, zero_division=0))
    assert m["per_class"]["Viral_Pneumonia"]["precision"] == 0.0
    assert m["per_class"]["Viral_Pneumonia"]["recall"] == 0.0
    assert m["per_class"]["Viral_Pneumonia"]["support"] == 3
    cm = confusion_matrix(y, pred, labels=[0, 1, 2])
    assert m["confusion_matrix"] == cm.tolist()
    for c, name in enumerate(CLASSES):  # specificity = TN / (TN + FP) from the confusion matrix
        fp = cm[:, c].sum() - cm[c, c]
        tn = cm.sum() - cm[c, :].sum() - cm[:, c].sum() + cm[c, c]
        assert m["per_class"][name]["specificity"] == pytest.approx(tn / (tn + fp))
        assert m["per_class"][name]["auc"] == pytest.approx(roc_auc_score(y == c, prob[:, c]))
    assert m["per_class"]["Viral_Pneumonia"]["specificity"] == 1.0  # never predicted -> no false positives
    assert m["macro_specificity"] == pytest.approx(np.mean([m["per_class"][c]["specificity"] for c in CLASSES]))
    assert m["macro_auc"] == pytest.approx(roc_auc_score(y, prob, multi_class="ovr", average="macro"))
    assert "Viral_Pneumonia" in m["classification_report"]
    json.dumps(m)  # JSON-able


def test_class_absent_from_test_labels_has_no_auc() -> None:
    y = np.array([0, 0, 1, 1])
    prob = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])
    m = metrics_from_predictions(y, prob, CLASSES)
    assert m["per_class"]["Viral_Pneumonia"]["auc"] is None
    assert m["macro_auc"] == pytest.approx(np.mean([roc_auc_score(y == c, prob[:, c]) for c in (0, 1)]))
    assert m["confusion_matrix"][2] == [0, 0, 0]
    json.dumps(m)


def test_confusion_png(tmp_path, fixed) -> None:
    m = metrics_from_predictions(*fixed, CLASSES)
    save_confusion_png(m, tmp_path / "confusion.png")
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    yt, yp = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    yp[:120] = yt[:120]
    cm = confusion_batch(yt, yp, np.arange(200)[None, :], 3)
    m = {k: float(v[0]) for k, v in metrics_from_confusion(cm).items()}
    assert tuple(m) == CONFUSION_METRICS
    assert m["accuracy"] == pytest.approx(np.mean(yt == yp))
    assert m["precision"] == pytest.approx(precision_score(yt, yp, average="macro"))
    assert m["recall"] == pytest.approx(recall_score(yt, yp, average="macro"))
    assert m["f1"] == pytest.approx(f1_score(yt, yp, average="macro"))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(yt, yp))
    spec = np.mean([np.sum((yt != c) & (yp != c)) / np.sum(yt != c) for c in range(3)])
    assert m["specificity"] == pytest.approx(spec)


def test_confusion_metrics_agree_with_metrics_from_predictions(fixed) -> None:
    """One home, one answer: the vectorised confusion metrics (bootstrap, subgroups) and the test-split metrics
    (results.csv) of the same predictions are equal, a never-predicted class included."""
    y, prob = fixed
    full = metrics_from_predictions(y, prob, CLASSES)
    cm = confusion_batch(y, prob.argmax(1), np.arange(len(y))[None, :], len(CLASSES))
    np.testing.assert_array_equal(cm[0], full["confusion_matrix"])
    m = {k: float(v[0]) for k, v in metrics_from_confusion(cm).items()}
    for name, key in [("accuracy", "accuracy"), ("mcc", "mcc"), ("precision", "macro_precision"),
                      ("recall", "macro_recall"), ("f1", "macro_f1")]:
        assert m[name] == pytest.approx(full[key], abs=1e-12), name
    assert m["specificity"] == pytest.approx(full["macro_specificity"], abs=1e-7)  # torchmetrics: float32

