"""From a frame to read faces: the one seam every command uses (``run``, ``predict``, ``detect``,
``eval``, ``bench``).

A :class:`FaceReader` is built once from the config's ``detector`` and ``classifier`` sections.
It finds faces (the whole frame and, for a frame larger than one tile, the tiles of
:mod:`maskwatch.edge.tiling`, merged so one face gives one box) and reads their mask state by the
mask rule (:mod:`maskwatch.edge.mask_state`): crop classifier, the detector's mask head, or both.

Example::

    reader = FaceReader.from_config(config.detector, config.classifier)
    reading = reader.read(frame_bgr)
    for box, p in zip(reading.faces.boxes, reading.probabilities):
        print(box, reader.labels[int(p.argmax())])

The pipeline splits the two steps: ``detect`` every frame, ``classify`` only the tracks due.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detector import DetectorConfig, FaceDetector, Faces
from .errors import ConfigError
from .interfaces import Classifier, Detector
from .mask_state import MaskRule
from .tiling import TilePlan, TilingConfig, merge, plan_grid, whole_pass_finds

log = logging.getLogger(__name__)
#: A tile keeps only faces up to this many times the smallest the whole-frame pass finds: larger ones are
#: that pass's (a tile may hold only part of them, and its box would be the part).
TILE_FACE_LIMIT = 2.0


@dataclass(frozen=True)
class Reading:
    """One frame's faces and their mask state, row for row."""

    faces: Faces
    crop: np.ndarray | None  #: (N, K) the crop classifier's probabilities; None when the rule does not run it
    probabilities: np.ndarray  #: (N, K) the rule's, columns in the reader's ``labels``


def offset(faces: Faces, x: float, y: float) -> Faces:
    """``faces`` found in a window whose corner is (x, y), in the frame's pixels."""
    shift = np.array([x, y], np.float32)
    return Faces(faces.boxes + np.tile(shift, 2), faces.scores, faces.landmarks + shift, faces.mask)


def concatenate(parts: list[Faces], keep: np.ndarray | None = None) -> Faces:
    """The rows of several ``Faces`` as one, only those at ``keep`` (in order) when given."""
    boxes = np.concatenate([p.boxes for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    landmarks = np.concatenate([p.landmarks for p in parts])
    mask = None if parts[0].mask is None else np.concatenate([p.mask for p in parts])
    if keep is not None:
        boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
        mask = None if mask is None else mask[keep]
    return Faces(boxes, scores, landmarks, mask)


def keep_small(faces: Faces, largest: float) -> Faces:
    """The rows of ``faces`` whose shorter side is at most ``largest`` pixels."""
    sides = np.minimum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])
    return concatenate([faces], np.flatnonzero(sides <= largest)) if len(faces) else faces


class FaceReader:
    """Detector, crop classifier (None when the rule reads the mask head alone, or to find faces only),
    mask rule and tiling."""

    def __init__(self, detector: Detector, classifier: Classifier | None = None, mask_rule: MaskRule | None = None,
                 tiling: TilingConfig | None = None):
        self.detector, self.classifier = detector, classifier
        self.mask_rule = mask_rule or MaskRule()
        self.mask_rule.check_detector(getattr(detector, "labels", None), getattr(classifier, "labels", None),
                                      str(getattr(detector, "path", "the detector")))
        self.labels: list[str] = list(classifier.labels if classifier is not None else detector.labels or [])
        self.tiling = tiling or TilingConfig()
        #: a saved crop is what the classifier reads: its box and margin; with no crop classifier, the box itself
        self.crop_margin = classifier.margin if classifier is not None else 0.0
        self._plans: dict[tuple[int, int], TilePlan | None] = {}
        if self.tiling.mode != "off":  # an impossible min_face_px is refused at start, not at the first frame
            try:
                plan_grid(1, 1, detector.nominal_input, self.tiling.min_face_px, detector.min_face_px)
            except ConfigError as exc:
                raise ConfigError(f"detector.tiling.{exc}") from None

    @classmethod
    def from_config(cls, detector: DetectorConfig, classifier, models_dir: str | Path | None = None) -> "FaceReader":
        """The reader the ``detector`` and ``classifier`` config sections describe; the classifier file is
        loaded only when the mask rule runs it."""
        from .classifier import MaskClassifier

        rule = MaskRule(classifier.rule, classifier.small_face_px)
        return cls(FaceDetector.from_config(detector, models_dir),
                   MaskClassifier.from_config(classifier, models_dir) if rule.needs_crop else None, rule, detector.tiling)

    def plan(self, width: int, height: int) -> TilePlan | None:
        """The tiles for frames of this size, or None when the whole-frame pass is all (tiling ``off``, or
        ``auto`` with a frame no larger than one tile). Worked out once per size and logged with its cost."""
        if (width, height) not in self._plans:
            plan = None
            if self.tiling.mode != "off":
                plan = plan_grid(width, height, self.detector.nominal_input, self.tiling.min_face_px,
                                 self.detector.min_face_px)
                if self.tiling.mode == "auto" and max(width, height) <= plan.side:
                    plan = None
            if plan is not None:
                log.info("%dx%d frames: %s, for faces from %g px", width, height, plan.describe(),
                         self.tiling.min_face_px)
            self._plans[(width, height)] = plan
        return self._plans[(width, height)]

    def whole_finds_px(self, width: int, height: int) -> float:
        """The smallest face, in frame pixels, the whole-frame pass finds in a frame of this size."""
        return whole_pass_finds(width, height, self.detector.nominal_input, self.detector.min_face_px)

    def schedule(self, width: int, height: int):
        """A :class:`~maskwatch.edge.tile_schedule.TileSchedule` for a video stream of this frame size, or None
        when every frame looks at every tile (no ``tiles_per_frame``) or at none (no plan)."""
        from .tile_schedule import TileSchedule

        plan = self.plan(width, height)
        if plan is None or self.tiling.tiles_per_frame is None:
            return None
        whole_finds = self.whole_finds_px(width, height)
        count, budget = len(plan.tiles), self.tiling.tiles_per_frame
        log.info("video: at most %d of the %d tiles a frame; every tile looked at within %g s needs %.1f frames a "
                 "second or more", budget, count, self.tiling.refresh_s, count / budget / self.tiling.refresh_s)
        return TileSchedule(plan, self.tiling.tiles_per_frame, self.tiling.refresh_s, whole_finds)

    def detect(self, image: np.ndarray, windows: np.ndarray | None = None) -> Faces:
        """Faces in a BGR frame: the whole-frame pass, then ``windows`` (x1, y1, x2, y2 rows in frame pixels;
        by default every tile of the frame's plan), merged so one face gives one box."""
        height, width = image.shape[:2]
        if windows is None:
            plan = self.plan(width, height)
            windows = plan.tiles if plan is not None else np.zeros((0, 4), np.int64)
        whole = self.detector.detect(image)
        if not len(windows):
            return whole
        largest = TILE_FACE_LIMIT * self.whole_finds_px(width, height)
        found = [keep_small(f, largest)
                 for f in self.detector.detect_many([image[y1:y2, x1:x2] for x1, y1, x2, y2 in windows])]
        parts = [whole] + [offset(f, x1, y1) for f, (x1, y1, _, _) in zip(found, windows)]
        window_of_box = np.concatenate([np.full(len(p), i - 1) for i, p in enumerate(parts)]).astype(np.int64)
        merged = concatenate(parts)
        keep = merge(merged.boxes, merged.scores, window_of_box, windows, (width, height),
                     self.detector.iou_threshold)
        return concatenate([merged], keep)

    def classify(self, image: np.ndarray, boxes: np.ndarray, mask: np.ndarray | None,
                 landmarks: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray]:
        """``(crop, probabilities)`` for faces with ``boxes`` (N, 4), their ``landmarks`` (N, 5, 2; needed by
        an aligned classifier) and the mask head's rows ``mask`` (N, K; None for a face-only detector): the
        crop classifier's (None when the rule does not run it) and the rule's, each (N, K)."""
        if self.mask_rule.needs_crop and self.classifier is None:
            raise TypeError(f"mask rule {self.mask_rule.rule!r} needs a crop classifier; this reader finds faces only")
        crop = self.classifier.classify_faces(image, boxes, landmarks) if self.mask_rule.needs_crop else None
        return crop, self.mask_rule.combine(crop, mask, boxes)

    def read(self, image: np.ndarray) -> Reading:
        """Every face of a frame, found and read."""
        faces = self.detect(image)
        crop, probabilities = self.classify(image, faces.boxes, faces.mask, faces.landmarks)
        return Reading(faces, crop, probabilities)
