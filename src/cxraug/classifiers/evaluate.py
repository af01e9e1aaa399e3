"""Test-split metrics, computed with scikit-learn and torchmetrics (never by hand).

:func:`evaluate` runs a model over a test :class:`ImageSet`; :func:`metrics_from_predictions` turns labels and
class probabilities into a JSON-able dict:

* ``accuracy``, ``mcc`` (scikit-learn ``matthews_corrcoef``);
* ``macro_*`` / ``weighted_*`` precision, recall, F1 (``precision_recall_fscore_support``, ``zero_division=0``:
  a class that is never predicted has precision 0);
* ``macro_specificity`` and per-class specificity (torchmetrics ``multiclass_specificity``);
* ``macro_auc``: one-vs-rest ROC-AUC averaged over the classes present in the test labels (``None`` when fewer
  than two are), per-class ``auc`` ``None`` for a class absent from the test labels;
* ``per_class`` {name: precision, recall, f1, specificity, auc, support}, ``confusion_matrix`` (rows = true,
  columns = predicted, every class listed), ``classification_report`` (scikit-learn's text table),
  ``classes``, ``n``.

:func:`metrics_from_confusion` computes the label metrics (accuracy, macro precision/recall/F1/specificity, MCC)
of many confusion matrices at once, vectorised (:func:`confusion_batch` builds them from resampled predictions):
what the study's test-image bootstrap and subgroup tables use; a test holds it equal to scikit-learn.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix, matthews_corrcoef,
                             precision_recall_fscore_support, roc_auc_score)
from torchmetrics.functional.classification import multiclass_specificity

from cxraug.data.imageset import ImageSet
from cxraug.io import atomic_path

if TYPE_CHECKING:
    from cxraug.classifiers.train import TrainedClassifier


def metrics_from_predictions(y_true: Sequence[int] | np.ndarray, y_prob: np.ndarray,
                             classes: Sequence[str]) -> dict[str, Any]:
    """Every classification metric from true labels (N,) and class probabilities (N, K)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    k = len(classes)
    labels = list(range(k))
    y_pred = y_prob.argmax(axis=1)
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    spec = multiclass_specificity(torch.as_tensor(y_pred), torch.as_tensor(y_true), num_classes=k,
                                  average=None).numpy()
    several = len(np.unique(y_true)) > 1
    auc = [float(roc_auc_score(y_true == c, y_prob[:, c])) if several and c in y_true else None for c in labels]
    defined = [a for a in auc if a is not None]
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "classes": list(classes),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "macro_specificity": float(spec.mean()),
        "macro_auc": float(np.mean(defined)) if len(defined) > 1 else None,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classification_report": classification_report(y_true, y_pred, labels=labels, target_names=list(classes),
                                                       zero_division=0, digits=4),
    }
    for average in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                        zero_division=0)
        out.update({f"{average}_precision": float(ap), f"{average}_recall": float(ar), f"{average}_f1": float(af)})
    out["per_class"] = {
        name: {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]), "specificity": float(spec[c]),
               "auc": auc[c], "support": int(support[c])}
        for c, name in enumerate(classes)
    }
    return out


#: the keys of :func:`metrics_from_confusion` (macro averages but accuracy and MCC)
CONFUSION_METRICS = ("accuracy", "precision", "recall", "f1", "specificity", "mcc")


def confusion_batch(y_true: np.ndarray, y_pred: np.ndarray, index: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices (B, K, K) [true, predicted] of ``index`` (B, N) resamples of one prediction set."""
    codes = y_true[index] * k + y_pred[index]
    b = index.shape[0]
    flat = codes + (np.arange(b) * k * k)[:, None]
    return np.bincount(flat.ravel(), minlength=b * k * k).reshape(b, k, k).astype(float)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro precision/recall/F1/specificity and multi-class MCC of confusion matrices (..., K, K)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    total = cm.sum(axis=(-2, -1))
    true_n = cm.sum(axis=-1)  # per true class
    pred_n = cm.sum(axis=-2)  # per predicted class
    fp, fn = pred_n - tp, true_n - tp
    tn = total[..., None] - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pred_n > 0, tp / pred_n, 0.0)
        recall = np.where(true_n > 0, tp / true_n, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), 0.0)
        correct = tp.sum(axis=-1)
        cov_xy = correct * total - (true_n * pred_n).sum(axis=-1)
        cov_xx = total**2 - (pred_n**2).sum(axis=-1)
        cov_yy = total**2 - (true_n**2).sum(axis=-1)
        denom = np.sqrt(cov_xx * cov_yy)
        mcc = np.where(denom > 0, cov_xy / np.where(denom > 0, denom, 1.0), 0.0)
        accuracy = correct / np.where(total > 0, total, 1.0)
    return {"accuracy": accuracy, "precision": precision.mean(-1), "recall": recall.mean(-1), "f1": f1.mean(-1),
            "specificity": specificity.mean(-1), "mcc": mcc}


def evaluate(model: "TrainedClassifier", test: ImageSet, batch_size: int = 128, device: str = "auto") -> dict[str, Any]:
    """Metrics of a trained classifier on a test set (see the module docstring for the keys)."""
    if list(test.classes) != list(model.classes):
        raise ValueError(f"test classes {test.classes} differ from the classifier's {model.classes}")
    prob = model.predict_proba(test.images, batch_size=batch_size, device=device)
    return metrics_from_predictions(test.labels, prob, test.classes)


def save_confusion_png(metrics: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Confusion matrix of a metrics dict as a PNG (scikit-learn's display, counts annotated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    k = len(metrics["classes"])
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * k, 1.2 + 1.0 * k))
    ConfusionMatrixDisplay(np.asarray(metrics["confusion_matrix"]), display_labels=metrics["classes"]).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=30)
    ax.set_title(f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
