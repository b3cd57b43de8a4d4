"""Reading a face's mask state from the crop classifier, the detector's mask head, or both.

A mask-aware detector (``convert train-detector``) gives each face mask-state probabilities from
its own features; the crop classifier gives them from the face cut out and enlarged. The rule
chooses how they make one answer, per face (probabilities over :data:`maskwatch.edge.labels.CLASSES`):

- ``crop``: the crop classifier's (a face-only detector allows nothing else);
- ``detector``: the detector's mask head's; the crop classifier is not run at all;
- ``product``: both multiplied and renormalised (a geometric mean of two opinions);
- ``size``: the detector's for faces whose shorter side is under ``small_face_px`` (too few
  pixels to crop well), the crop classifier's for the others.

Example::

    rule = MaskRule("size", small_face_px=24)
    probabilities = rule.combine(crop=p_crop, detector=faces.mask, boxes=faces.boxes)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

RULES = ("crop", "detector", "product", "size")
DEFAULT_RULE = "crop"
SMALL_FACE_PX = 24.0


@dataclass(frozen=True)
class MaskRule:
    """The configured rule: what a face's mask-state probabilities are made of (see the module docstring)."""

    rule: str = DEFAULT_RULE
    small_face_px: float = SMALL_FACE_PX

    def __post_init__(self):
        if self.rule not in RULES:
            raise ConfigError(f"mask rule {self.rule!r} is not one of: {', '.join(RULES)}")

    @property
    def needs_crop(self) -> bool:
        return self.rule != "detector"

    @property
    def needs_detector(self) -> bool:
        return self.rule != "crop"

    def check_detector(self, labels: list[str] | None, classifier_labels: list[str] | None, where: str) -> None:
        """ConfigError when the rule needs a mask head that ``where`` (the detector) lacks, or its
        labels are not the classifier's."""
        if not self.needs_detector:
            return
        if labels is None:
            raise ConfigError(f"{where} has no mask head; mask rule {self.rule!r} needs a mask-aware detector "
                              "(convert train-detector), or use rule 'crop'")
        if self.needs_crop and classifier_labels is not None and list(labels) != list(classifier_labels):
            raise ConfigError(f"{where}: mask labels {labels} differ from the classifier's {classifier_labels}")

    def combine(self, crop: np.ndarray | None, detector: np.ndarray | None, boxes: np.ndarray) -> np.ndarray:
        """One (N, K) float32 array of probabilities for N faces with boxes (N, 4)."""
        if self.rule == "crop":
            return np.asarray(crop, np.float32)
        if self.rule == "detector":
            return np.asarray(detector, np.float32)
        if self.rule == "product":
            joint = np.asarray(crop, np.float32) * np.asarray(detector, np.float32)
            return joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-12)
        small = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < self.small_face_px
        return np.where(small[:, None], detector, crop).astype(np.float32)
