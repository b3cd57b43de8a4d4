"""Anchor matching and box encoding for training RetinaFace, in plain numpy.

Each face is matched to the anchors it overlaps at IoU >= ``threshold`` (0.35, as RetinaFace is
trained), and to its best anchor whatever the overlap, provided that overlap is at least
``min_best`` (0.2): a face no anchor fits that well is left out rather than forced onto an anchor
it does not resemble. Box targets are the inverse of
:func:`maskwatch.edge.postprocess.decode_boxes`, with the same variances.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

MATCH_IOU = 0.35
MIN_BEST_IOU = 0.2


class Targets(NamedTuple):
    positive: np.ndarray  #: (A,) bool: anchor matched to a face
    boxes: np.ndarray  #: (A, 4) float32 encoded box of the matched face (zeros elsewhere)
    labels: np.ndarray  #: (A,) int64 mask label of the matched face, -1 elsewhere


def corners(priors: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) to (x1, y1, x2, y2)."""
    return np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (G, 4) with every box of ``b`` (A, 4), corner format: (G, A)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def encode_boxes(boxes: np.ndarray, priors: np.ndarray, variances=(0.1, 0.2)) -> np.ndarray:
    """Corner boxes (A, 4) as regression targets against priors (A, 4) (cx, cy, w, h)."""
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2 - priors[:, :2]) / (variances[0] * priors[:, 2:])
    size = np.log(np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6) / priors[:, 2:]) / variances[1]
    return np.concatenate([centre, size], axis=1).astype(np.float32)


def match(boxes: np.ndarray, labels: np.ndarray, priors: np.ndarray, threshold: float = MATCH_IOU,
          min_best: float = MIN_BEST_IOU, variances=(0.1, 0.2)) -> Targets:
    """Targets for one image: faces ``boxes`` (G, 4) corners with ``labels`` (G,), ``priors`` (A, 4)."""
    count = len(priors)
    if len(boxes) == 0:
        return Targets(np.zeros(count, bool), np.zeros((count, 4), np.float32), np.full(count, -1, np.int64))
    overlaps = iou_matrix(boxes.astype(np.float32), corners(priors))
    best_face = overlaps.argmax(axis=0)
    best_overlap = overlaps[best_face, np.arange(count)]
    best_anchor = overlaps.argmax(axis=1)
    for face in np.flatnonzero(overlaps[np.arange(len(boxes)), best_anchor] >= min_best):
        best_face[best_anchor[face]] = face
        best_overlap[best_anchor[face]] = 2.0  # kept whatever its IoU
    positive = best_overlap >= threshold
    encoded = np.zeros((count, 4), np.float32)
    encoded[positive] = encode_boxes(boxes[best_face[positive]], priors[positive], variances)
    mask_labels = np.where(positive, labels[best_face], -1).astype(np.int64)
    return Targets(positive, encoded, mask_labels)
