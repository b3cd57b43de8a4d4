"""Classification figures in plain numpy: confusion matrix, per-class precision, recall, F1,
and Wilson score intervals for precision and recall (rare classes have few crops)."""
from __future__ import annotations

import numpy as np


def confusion(truth, predicted, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are the true class, columns the predicted one."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    return matrix


#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson_interval(hits: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``hits / trials`` (95 % by default); (0, 1) when trials is 0.

    It stays inside [0, 1] and is honest for small counts, where the normal
    approximation is not: 11 of 19 is 0.58, somewhere between 0.36 and 0.77.
    """
    if trials <= 0:
        return 0.0, 1.0
    p, z2 = hits / trials, z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def per_class(matrix: np.ndarray, labels) -> dict:
    """Accuracy, per-class precision/recall/F1/support (with 95 % Wilson intervals for precision
    and recall) and macro F1 from a confusion matrix."""
    tp = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(0), matrix.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    present = actual > 0
    return {
        "accuracy": float(tp.sum() / max(1, matrix.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "classes": {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n),
                            "precision_ci95": wilson_interval(int(t), int(m)), "recall_ci95": wilson_interval(int(t), int(n))}
                    for label, p, r, f, n, t, m in zip(labels, precision, recall, f1, actual, tp, predicted)},
        "confusion": matrix.tolist(),
        "labels": list(labels),
    }
