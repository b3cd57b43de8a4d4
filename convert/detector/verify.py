"""``maskwatch convert verify``: every converted detector against the TensorFlow reference.

Each model and the reference see the same letterboxed input tensor, so the
figures measure conversion alone: the largest error on the raw heads,
detection agreement (precision, recall, F1 at IoU 0.5 over faces scored at
least 0.5) and the mean box and landmark error in frame pixels.
"""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np

from maskwatch.edge.detector import DetectorConfig, FaceDetector
from maskwatch.edge.errors import InputError
from maskwatch.edge.image import read_image
from maskwatch.edge.manifest import Manifest
from maskwatch.edge.postprocess import PostprocessSettings, RetinaFaceDecoder, iou
from maskwatch.benchmarks.accuracy.splits import select

from maskwatch.convert.detector import graph as rg
from maskwatch.convert.export.calibration import image_files
from maskwatch.convert.weights.retinaface import graph_bytes

log = logging.getLogger(__name__)
AGREEMENT_IOU = 0.5
AGREEMENT_SCORE = 0.5


def match(reference: np.ndarray, converted: np.ndarray) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (reference row, converted row) at IoU >= 0.5, best reference first."""
    pairs, taken = [], np.zeros(len(converted), bool)
    for i in range(len(reference)):
        if not len(converted):
            break
        overlaps = np.where(taken, -1.0, iou(reference[i, :4], converted[:, :4]))
        j = int(np.argmax(overlaps))
        if overlaps[j] >= AGREEMENT_IOU:
            pairs.append((i, j))
            taken[j] = True
    return pairs


def compare(detector: FaceDetector, reference: rg.HeadsModel, images: list[np.ndarray]) -> dict:
    """Parity figures of one detector against the reference on the given BGR images."""
    decoder = RetinaFaceDecoder(detector.decoder.anchor_config, PostprocessSettings(score_threshold=AGREEMENT_SCORE))
    worst = {"bbox": 0.0, "landmark": 0.0, "class": 0.0}
    n_ref = n_got = 0
    box_err, point_err = [], []
    for image in images:
        tensor, box = detector.prepare(image)
        got = detector.raw(tensor)
        raw = reference.numpy(tensor.astype(np.float32))
        ref = {k: np.concatenate([raw[n][0] for n in rg.OUTPUT_NAMES if n.startswith(k + "_")]) for k in worst}
        for kind in worst:
            worst[kind] = max(worst[kind], float(np.abs(got[kind] - ref[kind]).max()))
        h, w = box.input_height, box.input_width
        rows_ref = decoder(ref["bbox"], ref["landmark"], ref["class"], h, w)
        rows_got = decoder(got["bbox"], got["landmark"], got["class"], h, w)
        n_ref, n_got = n_ref + len(rows_ref), n_got + len(rows_got)
        for i, j in match(rows_ref, rows_got):
            a, b = box.to_frame(rows_ref[i]), box.to_frame(rows_got[j])
            box_err.append(float(np.abs(a[:4] - b[:4]).mean()))
            point_err.append(float(np.linalg.norm((a[5:] - b[5:]).reshape(5, 2), axis=1).mean()))
    tp = len(box_err)
    precision = tp / n_got if n_got else 1.0
    recall = tp / n_ref if n_ref else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "reference": "TensorFlow frozen graph, float32, same input tensor",
        "images": len(images),
        "max_abs_error": {k: round(v, 5) for k, v in worst.items()},
        "reference_faces": n_ref, "converted_faces": n_got,
        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        "mean_box_error_px": round(float(np.mean(box_err)), 3) if box_err else None,
        "mean_landmark_error_px": round(float(np.mean(point_err)), 3) if point_err else None,
        "iou": AGREEMENT_IOU, "score_threshold": AGREEMENT_SCORE,
    }


def run(models_dir: Path, images_dir: Path, limit: int = 40, split: str = "val", input_size: int = 640,
        graph: Path | None = None, cache: Path | None = None, trust_graph: bool = False,
        only: list[str] | None = None) -> dict[str, dict]:
    """Verify every detector in ``models_dir`` (or those named in ``only``); writes figures to the manifest."""
    manifest = Manifest.load(models_dir)
    names = [e.file for e in manifest.find("face_detection") if not only or e.file in only]
    if not names:
        raise InputError(f"{manifest.path}: no face detectors to verify")
    files = select(image_files(images_dir), split)
    if not files:
        raise InputError(f"{images_dir}: no images on the {split} side of the split")
    files = [files[i] for i in np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)]
    images = [read_image(f) for f in files]
    reference = rg.HeadsModel(rg.parse_graph_def(graph_bytes(graph, cache, trust_graph)[0]))
    results = {}
    for name in names:
        detector = FaceDetector.from_config(DetectorConfig(model=str(name), input_size=input_size), models_dir)
        figures = compare(detector, reference, images)
        figures.update(image_set=f"{Path(images_dir).name} ({split} split)", verified=dt.date.today().isoformat())
        if detector.entry.dynamic:
            figures["input_longest_side"] = input_size
        results[name] = figures
        manifest.entries[name] = manifest.entries[name].model_copy(update={"parity": figures})
        manifest.save()
        log.info("%s: F1 %.4f, max head error %s", name, figures["f1"], figures["max_abs_error"])
    return results


def table(results: dict[str, dict]) -> str:
    header = "| model | images | max err bbox/landm/class | ref faces | P | R | F1 | box px | landmark px |"
    lines = [header, "|" + "---|" * 9]
    for name, r in results.items():
        e = r["max_abs_error"]
        lines.append(f"| {name} | {r['images']} | {e['bbox']:.4f}/{e['landmark']:.4f}/{e['class']:.4f} | "
                     f"{r['reference_faces']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | "
                     f"{r['mean_box_error_px']} | {r['mean_landmark_error_px']} |")
    return "\n".join(lines)
