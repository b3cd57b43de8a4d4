"""Scoring in plain numpy, behind ``maskwatch eval``: PASCAL VOC ground truth, detection AP, crop accuracy.

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

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import InputError
from .image import IMAGE_SUFFIXES
from .labels import CLASSES
from .metrics import class_table, confusion, confusion_table, per_class
from .postprocess import iou

log = logging.getLogger(__name__)

#: The three classes of the andrewmvd set, in the order of every confusion matrix here.
#: The two classes of the headline two-class mAP.
MASK_NOMASK = ("with_mask", "without_mask")
#: Overlap at which a detection matches a face (PASCAL VOC's AP@0.5).
IOU_THRESHOLD = 0.5
#: Faces with a shorter side under this many pixels are ignore regions in the ``ignore_small`` figures.
SMALL_FACE_PX = 16
#: File names tried for a VOC file's image after its ``<filename>``: ``<xml stem><suffix>``.
VOC_IMAGE_SUFFIXES = IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES)


class VocAnnotation(NamedTuple):
    """One VOC XML file: the image's name (``None`` if the XML has none), size, boxes and labels."""

    filename: str | None
    width: int
    height: int
    boxes: np.ndarray  #: (N, 4) float32 pixel edges, clipped to the image
    labels: list[str]


# --------------------------------------------------------------------------- VOC XML


def _number(obj: ET.Element, field: str, where: str) -> float:
    text = obj.findtext(field)
    if text is None or not text.strip():
        raise InputError(f"{where} has no <{field.rpartition('/')[2]}>")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{where}: <{field.rpartition('/')[2]}> is not a finite number ({text.strip()[:40]!r})")
    return value


class VocObjects(NamedTuple):
    """One VOC XML file as written: the image's name (``None`` if absent), its ``(width, height)``
    (``None`` without ``<size>``), and ``(name, (xmin, ymin, xmax, ymax))`` per object, unclipped."""

    filename: str | None
    size: tuple[int, int] | None
    objects: list[tuple[str, tuple[float, float, float, float]]]


def read_voc_objects(xml_path) -> VocObjects:
    """The one VOC XML reader (evaluation here, training crops in :mod:`maskwatch.convert.face_data`).

    Raises :class:`InputError` naming the file for unreadable or malformed XML, a root other than
    ``<annotation>``, a ``<size>`` without a positive whole width and height, and an object without
    a ``<name>`` or a finite ``xmin ymin xmax ymax``. Labels and boxes are not judged here.
    """
    where = str(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{where}: malformed XML ({exc})") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({exc.strerror or exc})") from None
    if root.tag != "annotation":
        raise InputError(f"{where}: not a PASCAL VOC annotation (root element <{root.tag}>, expected <annotation>)")
    size = None
    if root.find("size") is not None:
        width, height = (_number(root, f"size/{key}", where) for key in ("width", "height"))
        if width <= 0 or height <= 0 or width != int(width) or height != int(height):
            raise InputError(f"{where}: image size {width:g}x{height:g} is not a positive whole number of pixels")
        size = int(width), int(height)
    objects = []
    for n, obj in enumerate(root.iter("object"), 1):
        here = f"{where}: object {n}"
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise InputError(f"{here} has no <name>")
        box = tuple(_number(obj, f"bndbox/{key}", here) for key in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((name, box))
    return VocObjects((root.findtext("filename") or "").strip() or None, size, objects)


def read_voc_annotations(xml_path, aliases: Mapping[str, str] | None = None) -> VocAnnotation:
    """Parse one PASCAL VOC XML file into ``(filename, width, height, boxes, labels)``.

    Every ``<object>`` needs a ``<name>`` (one of :data:`CLASSES`, after ``aliases`` maps other
    spellings onto them, e.g. ``{"mask": "with_mask"}``) and a ``<bndbox>`` with ``xmin ymin xmax
    ymax``, read as pixel edges and clipped to ``<size>`` (required here). A box with no area left
    after clipping (zero or negative width or height, or wholly outside the image) is dropped, and
    one warning per file counts them. ``<filename>`` may be absent (then ``filename`` is ``None``).

    Raises :class:`InputError` naming the file for what :func:`read_voc_objects` refuses, a missing
    size or an unknown label.
    """
    where = str(xml_path)
    raw = read_voc_objects(xml_path)
    if raw.size is None:
        raise InputError(f"{where} has no <width> (no <size>)")
    width, height = raw.size
    aliases = aliases or {}
    boxes, labels, dropped = [], [], 0
    for n, (name, (x1, y1, x2, y2)) in enumerate(raw.objects, 1):
        label = aliases.get(name, name)
        if label not in CLASSES:
            raise InputError(f"{where}: object {n}: unknown label {name!r} (expected one of {', '.join(CLASSES)})")
        x1, x2 = np.clip([x1, x2], 0, width)
        y1, y2 = np.clip([y1, y2], 0, height)
        if x2 <= x1 or y2 <= y1:
            dropped += 1
            continue
        boxes.append((x1, y1, x2, y2))
        labels.append(label)
    if dropped:
        log.warning("%s: dropped %d degenerate box%s (no area inside the %dx%d image)",
                    where, dropped, "" if dropped == 1 else "es", width, height)
    return VocAnnotation(raw.filename, width, height, np.array(boxes, np.float32).reshape(-1, 4), labels)


def _natural(path: Path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def voc_image_names(xml: Path, filename: str | None) -> list[str]:
    """Where a VOC file's image may be, in the order tried: its ``<filename>``, then its stem with
    each of :data:`VOC_IMAGE_SUFFIXES`."""
    return ([Path(filename).name] if filename else []) + [xml.stem + s for s in VOC_IMAGE_SUFFIXES]


def find_voc_image(xml: Path, filename: str | None, images: Path) -> Path | None:
    """The first of :func:`voc_image_names` that is a file in ``images``, or None."""
    return next((images / name for name in voc_image_names(xml, filename) if (images / name).is_file()), None)


def load_voc_folder(root, aliases: Mapping[str, str] | None = None) -> list[VocAnnotation]:
    """Every ``root/annotations/*.xml`` (natural order: 2 before 10), each checked against ``root/images``.

    The image is found by :func:`find_voc_image`; the returned ``filename`` is the one found. Raises
    :class:`InputError` naming the folder when it holds no annotations, and naming the XML when
    its image is missing.
    """
    root = Path(root)
    folder = root / "annotations"
    xmls = sorted(folder.glob("*.xml"), key=_natural) if folder.is_dir() else []
    if not xmls:
        raise InputError(f"{root}: holds no annotations (expected {folder}/*.xml)")
    images = root / "images"
    result = []
    for xml in xmls:
        annotation = read_voc_annotations(xml, aliases)
        found = find_voc_image(xml, annotation.filename, images)
        if found is None:
            raise InputError(f"{xml}: image {images / voc_image_names(xml, annotation.filename)[0]} not found")
        result.append(annotation._replace(filename=found.name))
    return result


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
                        small_face_px: float = SMALL_FACE_PX) -> dict:
    """Detection and labelling figures over a set of images, twice: all faces, and small faces ignored.

    Returns ``{"images", "iou_threshold", "small_face_px", "all": S, "ignore_small": S}`` where
    each ``S`` is::

        {"ap": {class: float | None},      # AP@iou_threshold per class of CLASSES
         "map_3class": float | None,       # mean over the classes that have positives
         "map_2class": float | None,       # the same over with_mask and without_mask
         "face_ap": float | None, "face_recall": float | None,   # class-agnostic
         "classes": {class: detection_ap(...)}, "faces": detection_ap(...),
         "labelling": per_class(...) + {"matched": int}}

    ``labelling`` is :func:`maskwatch.edge.metrics.per_class` of the confusion matrix (rows true class,
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

    Returns :func:`maskwatch.edge.metrics.per_class`'s dict plus ``"count"``. Raises :class:`InputError`
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


# --------------------------------------------------------------------------- rendering


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def table(results: dict) -> str:
    """Markdown for the CLI: the result of :func:`evaluate_detections` or of :func:`evaluate_crops`."""
    if "all" in results:
        sections = [("all", "all faces"), ("ignore_small", f"faces < {results['small_face_px']:g} px ignored")]
        rows = [(f"AP@{results['iou_threshold']:g} {label}", lambda s, c=label: _fmt(s["ap"][c])) for label in CLASSES]
        rows += [
            ("mAP (3 classes)", lambda s: _fmt(s["map_3class"])),
            ("mAP (with/without mask)", lambda s: _fmt(s["map_2class"])),
            ("face AP (any label)", lambda s: _fmt(s["face_ap"])),
            ("face recall", lambda s: _fmt(s["face_recall"])),
            ("faces counted", lambda s: str(s["faces"]["positives"])),
            ("label accuracy on matched faces", lambda s: _fmt(s["labelling"]["accuracy"])),
        ]
        lines = [f"{results['images']} images, IoU >= {results['iou_threshold']:g}", "",
                 "| metric | " + " | ".join(title for _, title in sections) + " |", "|---|---|---|"]
        lines += [f"| {name} | " + " | ".join(cell(results[key]) for key, _ in sections) + " |" for name, cell in rows]
        for key, title in sections:
            labelling = results[key]["labelling"]
            lines += ["", f"Labels of matched faces ({title}, {labelling['matched']} faces):", ""]
            lines += confusion_table(labelling)
        return "\n".join(lines)
    lines = [f"{results['count']} crops: accuracy {_fmt(results['accuracy'])}, macro F1 {_fmt(results['macro_f1'])}", ""]
    return "\n".join(lines + class_table(results, digits=3))
