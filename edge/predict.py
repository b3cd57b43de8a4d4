"""``maskwatch predict``: the whole pipeline (detector, classifier) on still images, as JSON lines.

One line per image::

    {"image": "street.png", "width": 640, "height": 480, "detections": [
        {"box": [x1, y1, x2, y2], "score": s, "label": "without_mask", "label_score": p,
         "landmarks": [[x, y], ...five]}]}

``score`` is the detection score times the label's probability, so one number
ranks detections for per-class AP; boxes are in the image's own pixels. The label
comes from the mask rule (:mod:`maskwatch.edge.mask_state`); each detection also
carries the opinions it was made from: ``crop_probabilities`` (the crop classifier's,
when it ran) and ``mask_probabilities`` (a mask-aware detector's), in ``labels`` order.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from .face_reader import FaceReader
from .image import ReadableImages


class ImagePredictor:
    """A :class:`~maskwatch.edge.face_reader.FaceReader` on one image at a time; every face is read (no tracking)."""

    def __init__(self, reader: FaceReader):
        self.reader = reader
        self.labels: list[str] = reader.labels

    def read(self, image_bgr: np.ndarray):
        """``(faces, crop, probabilities)``: the faces, the crop classifier's probabilities (None when
        the rule does not run it) and the rule's, each (N, K)."""
        reading = self.reader.read(image_bgr)
        return reading.faces, reading.crop, reading.probabilities

    def predict(self, image_bgr: np.ndarray) -> list[dict]:
        faces, crop, probabilities = self.read(image_bgr)
        detections = []
        for i, (box, score, points, p) in enumerate(zip(faces.boxes, faces.scores, faces.landmarks, probabilities)):
            best = int(p.argmax())
            detection = {"box": [round(float(v), 2) for v in box], "score": round(float(score * p[best]), 5),
                         "label": self.labels[best], "label_score": round(float(p[best]), 5),
                         "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in points]}
            for key, values in (("crop_probabilities", crop), ("mask_probabilities", faces.mask)):
                if values is not None:
                    detection[key] = [round(float(v), 5) for v in values[i]]
            detections.append(detection)
        return detections

    def predict_file(self, path, image: np.ndarray) -> dict:
        """One JSON line's content for ``image``, read from the file ``path``."""
        return {"image": path.name, "width": int(image.shape[1]), "height": int(image.shape[0]),
                "detections": self.predict(image)}


def predict_files(predictor: ImagePredictor, files, out, progress: bool | None = None) -> int:
    """Write one JSON line per readable file to ``out`` (unreadable ones are skipped, each with a
    one-line warning); a progress counter on stderr when it is a terminal. Returns the exit status
    (:meth:`ReadableImages.exit_status`)."""
    progress = sys.stderr.isatty() if progress is None else progress
    images = ReadableImages(list(files))
    for i, (path, image) in enumerate(images, 1):
        line = predictor.predict_file(path, image)
        out.write(json.dumps(line) + "\n")
        if progress:
            sys.stderr.write(f"\rpredict: {i + len(images.skipped)}/{len(images.files)} {path.name[:40]:40s}")
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    return images.exit_status()
