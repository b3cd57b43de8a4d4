"""``maskwatch eval``: accuracy of model variants on annotated scenes or crop folders.

Scenes (``--voc``): every image of the chosen split goes through the whole
pipeline (detector, classifier) at a low score threshold, and
:mod:`maskwatch.benchmarks.accuracy.scoring` gives AP@0.5 per class, mAP, face AP and recall, and the
label confusion on matched faces, over all faces and with faces under 16 px
ignored. Crops (``--crops``): accuracy, per-class precision, recall (each with its 95 %
Wilson interval), F1.
"""
from __future__ import annotations

from pathlib import Path

import cv2

from maskwatch.edge.errors import InputError
from maskwatch.edge.image import expand_images, read_image
from maskwatch.edge.labels import CLASS_ALIASES
from maskwatch.benchmarks.accuracy.scoring import evaluate_crops, evaluate_detections
from maskwatch.benchmarks.accuracy.voc import load_voc_folder
from maskwatch.benchmarks.accuracy.splits import split_of

#: Score threshold for evaluation: low, so that AP sees the whole precision/recall curve.
EVAL_THRESHOLD = 0.02


def voc_split(root: Path, split: str, val_fold: int = 0):
    """Annotations of the images on ``split`` (train, val or all; val is fold ``val_fold``)."""
    annotations = load_voc_folder(root, CLASS_ALIASES)
    chosen = [a for a in annotations if split == "all" or split_of(root / "images" / a.filename, val_fold) == split]
    if not chosen:
        raise InputError(f"{root}: no annotated images on the {split} side of the split")
    return chosen


def predict_scenes(process, root: Path, annotations) -> dict:
    """``process(image_bgr) -> (boxes, scores, labels)`` on each annotated image -> predictions by file name."""
    predictions = {}
    for a in annotations:
        boxes, scores, labels = process(read_image(root / "images" / a.filename))
        predictions[a.filename] = {"boxes": boxes, "scores": scores, "labels": labels}
    return predictions


def scored_scenes(process, root: Path, split: str = "val", val_fold: int = 0,
                  frame: tuple[int, int] | None = None) -> tuple[list, dict, dict]:
    """``(truth, predictions, extra)`` for one VOC folder's ``split``: each scene as it is, or with ``frame``
    (width, height) the scenes packed at their native pixels onto frames of that size
    (:mod:`maskwatch.benchmarks.accuracy.packing`), as a pole camera would see them."""
    root = Path(root)
    annotations = voc_split(root, split, val_fold)
    if frame is None:
        return annotations, predict_scenes(process, root, annotations), {}
    from maskwatch.benchmarks.accuracy.packing import pack_scenes

    truth, predictions, scenes = [], {}, 0
    for packed in pack_scenes(annotations, root / "images", frame):
        scenes += len(packed.scenes)
        boxes, scores, labels = process(packed.image)
        truth.append(packed.annotation)
        predictions[packed.annotation.filename] = {"boxes": boxes, "scores": scores, "labels": labels}
    return truth, predictions, {"frame_size": list(frame), "scenes": scenes}


def scene_figures(process, root: Path, split: str = "val", val_fold: int = 0,
                  frame: tuple[int, int] | None = None) -> dict:
    """:func:`maskwatch.benchmarks.accuracy.scoring.evaluate_detections` of one folder's scenes (see
    :func:`scored_scenes`)."""
    truth, predictions, extra = scored_scenes(process, root, split, val_fold, frame)
    return evaluate_detections(truth, predictions) | extra


def source_figures(process, roots: list[Path], split: str = "val", val_fold: int = 0,
                   frame: tuple[int, int] | None = None) -> dict[str, dict]:
    """Figures per scene folder, by its name, and with several folders ``pooled`` too: every scene of
    every folder scored as one set."""
    results, truth, predictions, extras = {}, [], {}, []
    for root in roots:
        root = Path(root)
        source_truth, source_predictions, extra = scored_scenes(process, root, split, val_fold, frame)
        results[root.name] = evaluate_detections(source_truth, source_predictions) | extra
        truth += [a._replace(filename=f"{root.name}/{a.filename}") for a in source_truth]
        predictions.update({f"{root.name}/{name}": p for name, p in source_predictions.items()})
        extras.append(extra)
    if len(roots) > 1:
        pooled = evaluate_detections(truth, predictions)
        if frame is not None:
            pooled |= {"frame_size": list(frame), "scenes": sum(e["scenes"] for e in extras)}
        results["pooled"] = pooled
    return results


def predictor_process(predictor):
    """An ImagePredictor as a ``process`` function for :func:`scene_figures`."""
    import numpy as np

    def process(image):
        detections = predictor.predict(image)
        return (np.array([d["box"] for d in detections], np.float32).reshape(-1, 4),
                np.array([d["score"] for d in detections], np.float32), [d["label"] for d in detections])
    return process


def crop_figures(classifier, root: Path, split: str = "val", val_fold: int = 0) -> dict:
    """A crop folder (one subfolder per class) scored by a classifier."""
    root = Path(root)
    truth, predicted = [], []
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise InputError(f"{root}: expected one subfolder of crops per class")
    for folder in folders:
        label = CLASS_ALIASES.get(folder.name, folder.name)
        if label not in classifier.labels:
            raise InputError(f"{folder}: {folder.name!r} is not a class ({', '.join(classifier.labels)})")
        files = [f for f in expand_images([folder]) if split == "all" or split_of(f, val_fold) == split]
        for path in files:
            crop = cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB)
            truth.append(label)
            predicted.append(classifier.labels[int(classifier.classify_crops([crop])[0].argmax())])
    if not truth:
        raise InputError(f"{root}: no crops on the {split} side of the split")
    return evaluate_crops(truth, predicted)
