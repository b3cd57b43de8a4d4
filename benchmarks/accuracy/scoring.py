"""Scoring in plain numpy, behind ``maskwatch eval``: detection AP and crop accuracy.

Ground truth comes from PASCAL VOC XML (the andrewmvd street scenes)::

    truth = load_voc_folder("shared/data/andrewmvd")    # root/annotations/*.xml, root/images/*
    found = {a.filename: {"boxes": boxes, "scores": scores, "labels": labels}  # your model's output
             for a in truth}
    print(table(evaluate_detections(truth, found)))

Conventions, in one place:

- Boxes are ``x1, y1, x2, y2`` pixel edges (a box ``0 0 10 10`` is 10 px wide; no VOC ``+1``),
  float32, shape (N, 4); an image without faces has a (0, 4) array.
- An image's ground truth is a mapping with ``boxes`` and ``labels``, or any object with those
  attributes (a :class:`VocAnnotation`); its predictions add ``scores`` (``labels`` may be left out
  for class-agnostic :func:`detection_ap`). ``ground_truth`` and ``predictions`` are either two
  sequences aligned by position, or ``predictions`` is a mapping keyed by image name (the
  annotation's ``filename``, or the key when ``ground_truth`` is itself a mapping); an image absent
  from it has no predictions.
- Matching is VOC's: detections in descending score order (ties keep input order); each takes the
  ground-truth box of its image (and class) with the highest IoU; at IoU >= threshold it is a true
  positive if that box is still unmatched, else a false positive (a duplicate); below, a false
  positive. Boxes whose shorter side is under ``ignore_below`` px behave as VOC's ``difficult``
  faces: a detection whose best box is one of them counts neither way (several may), and they are
  not positives.
- AP is VOC 2010+ all-point interpolation. A class with no positives has AP ``None`` and is left
  out of the means.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from maskwatch.benchmarks.accuracy.metrics import confusion, per_class
from maskwatch.edge.errors import InputError
from maskwatch.edge.labels import CLASSES
from maskwatch.edge.postprocess import iou

#: The two classes of the headline two-class mAP.
MASK_NOMASK = ("with_mask", "without_mask")
#: Overlap at which a detection matches a face (PASCAL VOC's AP@0.5).
IOU_THRESHOLD = 0.5
#: Faces with a shorter side under this many pixels are ignore regions in the ``ignore_small`` figures.
IGNORE_BELOW_PX = 16


# --------------------------------------------------------------------------- AP


def average_precision(recall, precision) -> float:
    """All-point interpolated AP (PASCAL VOC 2010+): area under the precision envelope.

    ``recall`` and ``precision`` are the cumulative values after each detection, best score first.
    The envelope at recall r is the best precision at any recall >= r; AP sums it over the steps
    where recall rises. Empty input gives 0.
    """
    r = np.concatenate([[0.0], np.asarray(recall, float), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, float), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _field(item, key: str, where: str, required: bool = True):
    value = item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)
    if value is None and required:
        raise InputError(f"{where} has no {key!r}")
    return value


def _boxes(value, where: str) -> np.ndarray:
    boxes = np.asarray(value, np.float32)
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(f"{where}: boxes must have shape (N, 4), got {boxes.shape}")
    return boxes


class _Image(NamedTuple):
    name: object
    gt_boxes: np.ndarray
    gt_labels: list
    boxes: np.ndarray
    scores: np.ndarray
    labels: list | None


def _pair(ground_truth, predictions) -> list[_Image]:
    """Line up each image's ground truth with its predictions, checking shapes."""
    if isinstance(ground_truth, Mapping):
        names, truths = list(ground_truth), list(ground_truth.values())
    else:
        truths = list(ground_truth)
        names = [_field(t, "filename", "", False) for t in truths]
        names = [i if name is None else name for i, name in enumerate(names)]
    if isinstance(predictions, Mapping):
        if len(set(names)) != len(names):
            raise InputError("ground truth names an image twice, so predictions cannot be keyed by image name")
        extra = [key for key in predictions if key not in set(names)]
        if extra:
            raise InputError(f"predictions for image {extra[0]!r}, which has no ground-truth entry")
        found = [predictions.get(name) for name in names]
    else:
        found = list(predictions)
        if len(found) != len(truths):
            raise InputError(f"{len(found)} images of predictions for {len(truths)} images of ground truth")
    images = []
    for name, truth, pred in zip(names, truths, found):
        where = f"ground truth of image {name!r}"
        gt_boxes = _boxes(_field(truth, "boxes", where), where)
        gt_labels = list(_field(truth, "labels", where))
        if len(gt_labels) != len(gt_boxes):
            raise InputError(f"{where}: {len(gt_boxes)} boxes but {len(gt_labels)} labels")
        where = f"predictions for image {name!r}"
        if pred is None:
            boxes, scores, labels = np.zeros((0, 4), np.float32), np.zeros(0), []
        else:
            boxes = _boxes(_field(pred, "boxes", where), where)
            scores = np.asarray(_field(pred, "scores", where), float).reshape(-1)
            labels = _field(pred, "labels", where, required=False)
            labels = None if labels is None else list(labels)
            if len(scores) != len(boxes) or (labels is not None and len(labels) != len(boxes)):
                raise InputError(f"{where}: {len(boxes)} boxes, {len(scores)} scores"
                                 + ("" if labels is None else f", {len(labels)} labels"))
        images.append(_Image(name, gt_boxes, gt_labels, boxes, scores, labels))
    return images


def _match(images: list[_Image], label, iou_threshold: float, ignore_below):
    """VOC greedy matching. Returns (positives, outcome, detection refs, matched GT refs) in score order.

    ``outcome`` per detection: 1 true positive, 0 false positive, -1 ignored. A ref is
    ``(image index, box index)``; a detection's matched GT ref is ``None`` unless it is a TP.
    """
    positives, refs, scores = 0, [], []
    gts = []
    for i, image in enumerate(images):
        keep_gt = np.array([label is None or lab == label for lab in image.gt_labels], bool)
        gt_index = np.flatnonzero(keep_gt)
        gt = image.gt_boxes[gt_index]
        small = np.zeros(len(gt), bool)
        if ignore_below is not None:
            small = np.minimum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]) < ignore_below
        positives += int((~small).sum())
        gts.append((gt, gt_index, small, np.zeros(len(gt), bool)))
        if label is not None and image.labels is None and len(image.boxes):
            raise InputError(f"predictions for image {image.name!r} have no 'labels', needed for class {label!r}")
        for j in range(len(image.boxes)):
            if label is None or image.labels[j] == label:
                refs.append((i, j))
                scores.append(image.scores[j])
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    outcome = np.zeros(len(order), np.int8)
    detections = [refs[k] for k in order]
    matched = [None] * len(order)
    for rank, (i, j) in enumerate(detections):
        gt, gt_index, small, used = gts[i]
        if not len(gt):
            continue
        overlaps = iou(images[i].boxes[j], gt)
        best = int(np.argmax(overlaps))
        if overlaps[best] < iou_threshold:
            continue
        if small[best]:
            outcome[rank] = -1
        elif not used[best]:
            used[best] = True
            outcome[rank] = 1
            matched[rank] = (i, int(gt_index[best]))
    return positives, outcome, detections, matched


def _summary(positives: int, outcome: np.ndarray) -> dict:
    counted = outcome[outcome >= 0]
    tp, fp = np.cumsum(counted == 1), np.cumsum(counted == 0)
    result = {"ap": None, "recall": None, "precision": None, "positives": positives,
              "tp": int(tp[-1]) if len(tp) else 0, "fp": int(fp[-1]) if len(fp) else 0,
              "ignored": int((outcome < 0).sum()), "detections": len(outcome)}
    if positives:
        recall = tp / positives
        precision = tp / np.maximum(tp + fp, 1)
        result["ap"] = average_precision(recall, precision)
        result["recall"] = float(recall[-1]) if len(recall) else 0.0
        result["precision"] = float(precision[np.argmax(recall)]) if len(recall) and recall[-1] > 0 else 0.0
    return result


def detection_ap(ground_truth, predictions, iou_threshold: float = IOU_THRESHOLD, label: str | None = None,
                 ignore_below: float | None = None) -> dict:
    """AP of one class (``label``), or of faces whatever their label (``label=None``), VOC style.

    See the module docstring for the input forms and the matching rule. Returns::

        {"ap": float | None,         # None when there are no positives
         "recall": float | None,     # recall after every detection (the maximum)
         "precision": float | None,  # precision where recall first reaches that maximum
         "positives": int,           # ground-truth faces, less the ignored small ones
         "tp": int, "fp": int,       # over all detections (duplicates are fp)
         "ignored": int,             # detections on ignore regions, counted neither way
         "detections": int}
    """
    images = _pair(ground_truth, predictions)
    positives, outcome, _, _ = _match(images, label, iou_threshold, ignore_below)
    return _summary(positives, outcome)


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _check_labels(images: list[_Image]) -> None:
    for image in images:
        for kind, labels in (("ground truth", image.gt_labels), ("predictions", image.labels)):
            unknown = next((lab for lab in labels or [] if lab not in CLASSES), None)
            if unknown is not None:
                raise InputError(f"{kind} for image {image.name!r}: unknown label {unknown!r} "
                                 f"(expected one of {', '.join(CLASSES)})")
        if image.labels is None and len(image.boxes):
            raise InputError(f"predictions for image {image.name!r} have no 'labels'")


def evaluate_detections(ground_truth, predictions, iou_threshold: float = IOU_THRESHOLD,
                        small_face_px: float = IGNORE_BELOW_PX) -> dict:
    """Detection and labelling figures over a set of images, twice: all faces, and small faces ignored.

    Returns ``{"images", "iou_threshold", "small_face_px", "all": S, "ignore_small": S}`` where
    each ``S`` is::

        {"ap": {class: float | None},      # AP@iou_threshold per class of CLASSES
         "map_3class": float | None,       # mean over the classes that have positives
         "map_2class": float | None,       # the same over with_mask and without_mask
         "face_ap": float | None, "face_recall": float | None,   # class-agnostic
         "classes": {class: detection_ap(...)}, "faces": detection_ap(...),
         "labelling": per_class(...) + {"matched": int}}

    ``labelling`` is :func:`maskwatch.benchmarks.accuracy.metrics.per_class` of the confusion matrix (rows true class,
    columns predicted, order :data:`CLASSES`) over the faces matched by the class-agnostic pass:
    the true positives of ``faces``, so ignored small faces do not enter it.
    """
    images = _pair(ground_truth, predictions)
    _check_labels(images)
    result = {"images": len(images), "iou_threshold": iou_threshold, "small_face_px": small_face_px}
    for section, ignore_below in (("all", None), ("ignore_small", small_face_px)):
        classes = {}
        for label in CLASSES:
            positives, outcome, _, _ = _match(images, label, iou_threshold, ignore_below)
            classes[label] = _summary(positives, outcome)
        positives, outcome, detections, matched = _match(images, None, iou_threshold, ignore_below)
        faces = _summary(positives, outcome)
        pairs = [(CLASSES.index(images[i].gt_labels[ref[1]]), CLASSES.index(images[i].labels[j]))
                 for (i, j), ref in zip(detections, matched) if ref is not None]
        truth, predicted = zip(*pairs) if pairs else ((), ())
        labelling = per_class(confusion(truth, predicted, len(CLASSES)), CLASSES)
        labelling["matched"] = len(pairs)
        ap = {label: classes[label]["ap"] for label in CLASSES}
        result[section] = {
            "ap": ap,
            "map_3class": _mean(ap.values()),
            "map_2class": _mean(ap[label] for label in MASK_NOMASK),
            "face_ap": faces["ap"],
            "face_recall": faces["recall"],
            "classes": classes,
            "faces": faces,
            "labelling": labelling,
        }
    return result


# --------------------------------------------------------------------------- crops


def evaluate_crops(truth_labels, predicted_labels, labels=CLASSES) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro F1 and confusion of crop labels.

    Returns :func:`maskwatch.benchmarks.accuracy.metrics.per_class`'s dict plus ``"count"``. Raises :class:`InputError`
    for lists of different lengths or a label outside ``labels``.
    """
    truth, predicted, labels = list(truth_labels), list(predicted_labels), list(labels)
    if len(truth) != len(predicted):
        raise InputError(f"{len(truth)} true labels but {len(predicted)} predicted labels")
    index = {label: i for i, label in enumerate(labels)}
    for kind, values in (("true", truth), ("predicted", predicted)):
        unknown = next((v for v in values if v not in index), None)
        if unknown is not None:
            raise InputError(f"unknown {kind} label {unknown!r} (expected one of {', '.join(labels)})")
    matrix = confusion([index[t] for t in truth], [index[p] for p in predicted], len(labels))
    return {**per_class(matrix, labels), "count": len(truth)}
