"""RetinaFace post-processing in plain numpy: anchors, decoding and NMS.

The detector models stop at the nine per-level heads (box, landmark and class
for strides 8, 16 and 32). Everything after that lives here, so every runtime
and every precision shares one decoder.

Coordinates are in the model's input pixels; :mod:`maskwatch.edge.detector` maps them
back to the frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

#: Columns of a detection row: x1, y1, x2, y2, score, then five (x, y) landmarks
#: (left eye, right eye, nose, left mouth corner, right mouth corner).
DETECTION_COLUMNS = 15


@dataclass(frozen=True)
class AnchorConfig:
    """Anchor layout of a RetinaFace model (defaults: the MobileNetV2 RetinaFace)."""

    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variances: tuple[float, float] = (0.1, 0.2)

    @classmethod
    def from_dict(cls, data: dict) -> "AnchorConfig":
        return cls(
            min_sizes=tuple(tuple(int(s) for s in level) for level in data["min_sizes"]),
            steps=tuple(int(s) for s in data["steps"]),
            variances=tuple(float(v) for v in data["variances"]),
        )

    def to_dict(self) -> dict:
        return {
            "min_sizes": [list(level) for level in self.min_sizes],
            "steps": list(self.steps),
            "variances": list(self.variances),
        }


@lru_cache(maxsize=16)
def anchors(height: int, width: int, config: AnchorConfig = AnchorConfig()) -> np.ndarray:
    """Anchors (cx, cy, w, h) in input pixels, float32, shape (N, 4).

    Per level, rows run over the feature map row-major and then over that
    level's min sizes, matching the order of the model's reshaped heads.
    Cached per (height, width, config); the returned array is read-only.
    """
    levels = []
    for step, sizes in zip(config.steps, config.min_sizes):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(cx + 0.5) * step, (cy + 0.5) * step], axis=-1).reshape(-1, 1, 2)
        centres = np.repeat(centres, len(sizes), axis=1)
        wh = np.broadcast_to(np.array(sizes, np.float64)[None, :, None], centres.shape)
        levels.append(np.concatenate([centres, wh], axis=-1).reshape(-1, 4))
    result = np.concatenate(levels).astype(np.float32)
    result.flags.writeable = False
    return result


def softmax_face_score(logits: np.ndarray) -> np.ndarray:
    """Probability of 'face' from two-class logits (background, face)."""
    return 1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))


def decode_boxes(deltas: np.ndarray, priors: np.ndarray, variances=(0.1, 0.2)) -> np.ndarray:
    """Box regressions (N, 4) to corners x1, y1, x2, y2 in the priors' pixels."""
    centre = priors[:, :2] + deltas[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(deltas[:, 2:] * variances[1])
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def decode_landmarks(deltas: np.ndarray, priors: np.ndarray, variances=(0.1, 0.2)) -> np.ndarray:
    """Landmark regressions (N, 10) to five (x, y) points, shape (N, 10)."""
    points = deltas.reshape(-1, 5, 2) * variances[0] * priors[:, None, 2:] + priors[:, None, :2]
    return points.reshape(-1, 10)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with many (N, 4), corner format."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True)
class PostprocessSettings:
    """Thresholds applied after decoding."""

    score_threshold: float = 0.5  #: minimum face probability kept
    iou_threshold: float = 0.4  #: NMS overlap above which the weaker box is dropped
    max_detections: int = 750  #: cap after NMS (crowded scenes hold hundreds of faces)
    pre_nms_top_k: int = 5000  #: candidates kept before NMS, by score


@dataclass
class RetinaFaceDecoder:
    """Turns the nine raw heads of one image into detection rows.

    ``__call__(bbox, landmark, classes, height, width)`` takes the heads of each
    kind already concatenated over levels (shapes (N, 4), (N, 10), (N, 2)) and
    returns float32 rows of :data:`DETECTION_COLUMNS` columns, best first; an
    empty ``(0, 15)`` array when nothing passes the threshold. With ``mask``, a
    mask head's logits (N, K), each row gains K columns: the softmax of its
    anchor's mask logits (K = 3 for :data:`maskwatch.edge.labels.CLASSES`).
    """

    anchor_config: AnchorConfig = field(default_factory=AnchorConfig)
    settings: PostprocessSettings = field(default_factory=PostprocessSettings)

    def __call__(self, bbox, landmark, classes, height: int, width: int, mask=None) -> np.ndarray:
        priors = anchors(height, width, self.anchor_config)
        if len(priors) != len(bbox):
            raise ValueError(
                f"model heads hold {len(bbox)} anchors but a {width}x{height} input needs {len(priors)}"
            )
        scores = softmax_face_score(classes.astype(np.float32))
        candidates = np.flatnonzero(scores >= self.settings.score_threshold)
        if candidates.size > self.settings.pre_nms_top_k:
            top = np.argpartition(-scores[candidates], self.settings.pre_nms_top_k)
            candidates = candidates[top[: self.settings.pre_nms_top_k]]
        columns = DETECTION_COLUMNS + (0 if mask is None else mask.shape[1])
        if candidates.size == 0:
            return np.zeros((0, columns), np.float32)
        p = priors[candidates]
        var = self.anchor_config.variances
        boxes = decode_boxes(bbox[candidates].astype(np.float32), p, var)
        points = decode_landmarks(landmark[candidates].astype(np.float32), p, var)
        keep = nms(boxes, scores[candidates], self.settings.iou_threshold)[: self.settings.max_detections]
        parts = [boxes[keep], scores[candidates][keep, None], points[keep]]
        if mask is not None:
            logits = mask[candidates][keep].astype(np.float32)
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            parts.append(exp / exp.sum(axis=1, keepdims=True))
        return np.concatenate(parts, axis=1).astype(np.float32)
