"""Augmentation of whole scenes for training the detector (numpy + OpenCV, seeded).

:func:`augment_scene` rescales a scene by a random factor (log-uniform over ``scale_range``, so
faces appear at the sizes a 320 or 640 input gives them, and smaller), places it at random on a
``size x size`` canvas (cropping when larger, black padding as the runtime's letterbox pads), keeps
the faces whose centre stays inside, flips half the scenes, and applies the colour, blur and JPEG
changes of the crop classifier's augmentation (:mod:`maskwatch.convert.data.augment`).
"""
from __future__ import annotations

import math

import numpy as np

from maskwatch.edge.image import stretch

from maskwatch.convert.data.augment import blur, colour, jpeg

#: Faces whose clipped box is narrower or shorter than this (px) after augmentation are dropped.
MIN_FACE_PX = 2.0
SCALE_RANGE = (0.6, 2.2)
#: (transform, probability) applied after the geometry.
PHOTOMETRIC = ((colour, 0.8), (blur, 0.2), (jpeg, 0.3))


def augment_scene(pixels: np.ndarray, boxes: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator,
                  scale_range: tuple[float, float] = SCALE_RANGE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random variant of an RGB uint8 scene: ``(image (size, size, 3), boxes (M, 4), labels (M,))``."""
    h, w = pixels.shape[:2]
    scale = math.exp(rng.uniform(math.log(scale_range[0]), math.log(scale_range[1])))
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = stretch(pixels, new_w, new_h)
    boxes = boxes.astype(np.float32) * np.array([new_w / w, new_h / h] * 2, np.float32)
    # offset of the scene on the canvas: negative where it is cropped, positive where padded
    dx = -int(rng.integers(0, new_w - size + 1)) if new_w > size else int(rng.integers(0, size - new_w + 1))
    dy = -int(rng.integers(0, new_h - size + 1)) if new_h > size else int(rng.integers(0, size - new_h + 1))
    canvas = np.zeros((size, size, 3), np.uint8)
    sx, sy = max(0, -dx), max(0, -dy)
    tx, ty = max(0, dx), max(0, dy)
    cw, ch = min(new_w - sx, size - tx), min(new_h - sy, size - ty)
    canvas[ty:ty + ch, tx:tx + cw] = resized[sy:sy + ch, sx:sx + cw]
    boxes = boxes + np.array([dx, dy, dx, dy], np.float32)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = np.all((centres >= 0) & (centres < size), axis=1)
    boxes, labels = np.clip(boxes[inside], 0, size), labels[inside]
    big = np.all(boxes[:, 2:] - boxes[:, :2] >= MIN_FACE_PX, axis=1)
    boxes, labels = boxes[big], labels[big]
    if rng.random() < 0.5:
        canvas = np.ascontiguousarray(canvas[:, ::-1])
        boxes = np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=1)
    for transform, probability in PHOTOMETRIC:
        if rng.random() < probability:
            canvas = transform(canvas, rng)
    return canvas, boxes.astype(np.float32).reshape(-1, 4), labels
