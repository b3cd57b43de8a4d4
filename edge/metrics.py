"""Classification figures in plain numpy: confusion matrix, per-class precision, recall, F1."""
from __future__ import annotations

import numpy as np


def confusion(truth, predicted, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are the true class, columns the predicted one."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    return matrix


def per_class(matrix: np.ndarray, labels) -> dict:
    """Accuracy, per-class precision/recall/F1/support and macro F1 from a confusion matrix."""
    tp = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(0), matrix.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    present = actual > 0
    return {
        "accuracy": float(tp.sum() / max(1, matrix.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "classes": {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
                    for label, p, r, f, n in zip(labels, precision, recall, f1, actual)},
        "confusion": matrix.tolist(),
        "labels": list(labels),
    }
