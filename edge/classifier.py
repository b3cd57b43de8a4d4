"""The mask classifier: with_mask / without_mask / mask_weared_incorrect per face crop.

Example::

    from maskwatch.edge.classifier import MaskClassifier
    classifier = MaskClassifier()                      # the shipped int8 model
    probabilities = classifier.classify_faces(frame_bgr, faces.boxes)
    labels = [classifier.labels[i] for i in probabilities.argmax(1)]

A crop is the detector's box grown by the model's margin, or, for a model whose manifest entry says
``"align": "landmarks"``, the face turned upright on its five landmarks with that margin
(:func:`maskwatch.edge.align.aligned_face`); either is stretched to the model's square input and fed
RGB 0..255; the model normalises itself.
"""
from __future__ import annotations

from pathlib import Path

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from .align import aligned_face
from .errors import ModelError
from .image import crop_with_margin, stretch, to_bgr8
from .manifest import Manifest
from .mask_state import DEFAULT_RULE, RULES, SMALL_FACE_PX
from .runtimes import load_runtime, to_input
from .runtimes.config import ModelSection

DEFAULT_CLASSIFIER = "mask_mnv2_96_int8.tflite"
#: How a crop is cut, by the manifest's ``preprocessing.align``: absent for the box, ``landmarks`` for an aligned face.
ALIGN_LANDMARKS = "landmarks"


class ClassifierConfig(ModelSection):
    """The ``classifier`` config section: the crop classifier's file and runtime, and how a face's state is read."""

    model: str = Field(DEFAULT_CLASSIFIER, description="classifier file in the manifest, or a path")
    rule: Literal[RULES] = Field(
        DEFAULT_RULE, description="how a face's mask state is read: crop classifier, the detector's mask head, their "
                                  "product, or by size (see edge/mask_state.py); all but crop need a mask-aware detector")
    small_face_px: float = Field(SMALL_FACE_PX, gt=0, description="with rule 'size': faces whose shorter side is under "
                                                                  "this use the detector's mask head")


class MaskClassifier:
    """Any shipped classifier file on LiteRT or ONNX Runtime, sha256 checked."""

    def __init__(self, model: str | Path = DEFAULT_CLASSIFIER, backend: str = "auto", threads: int | None = None,
                 models_dir: str | Path | None = None, **runtime_options):
        self.path, self.entry = Manifest.load(models_dir).resolve(model)
        if self.entry.task != "mask_classification":
            raise ModelError(f"{self.path}: a {self.entry.task} model, not a mask classifier")
        self.runtime = load_runtime(self.path, backend, expected_shape=self.entry.input.shape, threads=threads,
                                    **runtime_options)
        self.labels: list[str] = list(self.entry.labels)
        self.size = int(self.entry.input.shape[1])
        self.margin = float(self.entry.preprocessing["margin"])
        align = self.entry.preprocessing.get("align")
        if align not in (None, ALIGN_LANDMARKS):
            raise ModelError(f"{self.path}: preprocessing.align {align!r} is not known (only {ALIGN_LANDMARKS!r})")
        #: True when faces are cut on their landmarks (:meth:`classify_faces` then needs them).
        self.aligned = align == ALIGN_LANDMARKS
        self._batched = self.runtime.input_shape[0] is None

    @classmethod
    def from_config(cls, section: ClassifierConfig, models_dir: str | Path | None = None) -> "MaskClassifier":
        """The classifier a ``classifier`` config section describes (what the app, CLI, bench and toolchain use)."""
        return cls(section.model, backend=section.backend, threads=section.threads, models_dir=models_dir,
                   **section.runtime_options())

    def resize(self, crop_rgb: np.ndarray) -> np.ndarray:
        """Stretched to the input size as in training (:func:`maskwatch.edge.image.stretch`)."""
        return stretch(crop_rgb, self.size, self.size)

    def classify_crops(self, crops_rgb: list[np.ndarray]) -> np.ndarray:
        """Probabilities (N, len(labels)) for RGB uint8 face crops of any size."""
        if not len(crops_rgb):
            return np.zeros((0, len(self.labels)), np.float32)
        batch = np.stack([self.resize(c) for c in crops_rgb])
        if self._batched:
            return self.runtime.run(to_input(batch, self.runtime))["probabilities"].astype(np.float32)
        return np.concatenate([self.runtime.run(to_input(batch[i:i + 1], self.runtime))["probabilities"]
                               for i in range(len(batch))]).astype(np.float32)

    def classify_faces(self, frame_bgr: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """Probabilities for each detector box in a BGR frame (``landmarks`` (N, 5, 2), the detector's, for an
        aligned model)."""
        frame_bgr = to_bgr8(frame_bgr)
        return self.classify_crops([cv2.cvtColor(c, cv2.COLOR_BGR2RGB) for c in self.face_crops(frame_bgr, boxes, landmarks)])

    def face_crops(self, frame_bgr: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None) -> list[np.ndarray]:
        """Each face cut as this model was trained on it (BGR, not yet stretched). An aligned model falls back
        to the box for a face whose landmarks lie too close together to align."""
        if not self.aligned:
            return [crop_with_margin(frame_bgr, box, self.margin) for box in boxes]
        if landmarks is None or len(landmarks) != len(boxes):
            raise ValueError(f"{self.path.name} cuts faces on their landmarks: give one set of five per box")
        crops = []
        for box, points in zip(boxes, landmarks):
            try:
                crops.append(aligned_face(frame_bgr, points, self.margin))
            except ValueError:
                crops.append(crop_with_margin(frame_bgr, box, self.margin))
        return crops
