"""The mask classifier: with_mask / without_mask / mask_weared_incorrect per face crop.

Example::

    from maskwatch.edge.classifier import MaskClassifier
    classifier = MaskClassifier()                      # the shipped int8 model
    probabilities = classifier.classify_faces(frame_bgr, faces.boxes)
    labels = [classifier.labels[i] for i in probabilities.argmax(1)]

A crop is the detector's box grown by the model's margin, stretched to the
model's square input, fed RGB 0..255; the model normalises itself.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import ModelError
from .image import crop_with_margin, stretch, to_bgr8
from .manifest import Manifest
from .runtimes import load_runtime

DEFAULT_CLASSIFIER = "mask_mnv2_96_int8.tflite"


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
        self._batched = self.runtime.input_shape[0] is None

    def _tensor(self, crops_rgb: np.ndarray) -> np.ndarray:
        dtype, quantization = self.runtime.input_dtype, self.runtime.input_quantization
        if dtype == np.float32:
            return crops_rgb.astype(np.float32)
        scale, zero = quantization or (1.0, 0)
        if (scale, zero) == (1.0, 0) and dtype == np.uint8:
            return crops_rgb
        info = np.iinfo(dtype)
        return np.clip(np.round(crops_rgb / scale + zero), info.min, info.max).astype(dtype)

    def resize(self, crop_rgb: np.ndarray) -> np.ndarray:
        """Stretched to the input size as in training (:func:`maskwatch.edge.image.stretch`)."""
        return stretch(crop_rgb, self.size, self.size)

    def classify_crops(self, crops_rgb: list[np.ndarray]) -> np.ndarray:
        """Probabilities (N, len(labels)) for RGB uint8 face crops of any size."""
        if not len(crops_rgb):
            return np.zeros((0, len(self.labels)), np.float32)
        batch = np.stack([self.resize(c) for c in crops_rgb])
        if self._batched:
            return self.runtime.run(self._tensor(batch))["probabilities"].astype(np.float32)
        return np.concatenate([self.runtime.run(self._tensor(batch[i:i + 1]))["probabilities"]
                               for i in range(len(batch))]).astype(np.float32)

    def classify_faces(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Probabilities for each detector box in a BGR frame."""
        frame_bgr = to_bgr8(frame_bgr)
        crops = [cv2.cvtColor(crop_with_margin(frame_bgr, box, self.margin), cv2.COLOR_BGR2RGB) for box in boxes]
        return self.classify_crops(crops)
