"""Scenes packed at their native pixels onto camera-sized frames: how a pole camera sees a street.

Street photos are a few hundred pixels wide; a pole camera's frame is 1920x1080 or more, with the
same faces at the same pixel sizes. Packing the photos in rows onto a grey canvas of the camera's
size (boxes moved with them) keeps every face's size and makes the frame a camera's, so a
detector that letterboxes the whole frame is measured as it would fare on the pole.

Example::

    for frame in pack_scenes(annotations, root / "images", (1920, 1080)):
        boxes, scores, labels = process(frame.image)   # frame.annotation holds the moved boxes
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskwatch.benchmarks.accuracy.voc import VocAnnotation
from maskwatch.edge.errors import InputError
from maskwatch.edge.image import read_image

#: Canvas grey (the letterbox's) and the gap between packed scenes, in pixels.
CANVAS = 114
GAP = 8


@dataclass(frozen=True)
class PackedFrame:
    image: np.ndarray  #: BGR canvas of the frame size
    annotation: VocAnnotation  #: every packed scene's boxes, in the canvas's pixels
    scenes: list[str]  #: the file names packed onto it, in order


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> (1920, 1080); InputError for anything else."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()) or not (64 <= int(width) <= 8192 and 64 <= int(height) <= 8192):
        raise InputError(f"frame size {text!r}: expected WIDTHxHEIGHT, each 64 to 8192 (e.g. 1920x1080)")
    return int(width), int(height)


def pack_scenes(annotations: list[VocAnnotation], images: Path, frame: tuple[int, int]):
    """Yield :class:`PackedFrame` s: scenes in order, left to right in rows, a new frame when one is full.
    A scene larger than the frame is shrunk to fit (its boxes with it); every other keeps its pixels."""
    width, height = frame
    canvas, boxes, labels, names = None, [], [], []
    x = y = row = 0

    def done():
        return PackedFrame(canvas, VocAnnotation(f"packed-{count:04d}-{names[0]}", width, height,
                                                 np.array(boxes, np.float32).reshape(-1, 4), list(labels)), list(names))

    count = 0
    for annotation in annotations:
        scene = read_image(images / annotation.filename)
        scale = min(1.0, width / scene.shape[1], height / scene.shape[0])
        if scale < 1.0:
            scene = cv2.resize(scene, (max(1, int(scene.shape[1] * scale)), max(1, int(scene.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
        h, w = scene.shape[:2]
        if canvas is not None and x + w > width:  # next row
            x, y, row = 0, y + row + GAP, 0
        if canvas is not None and y + h > height:  # next frame
            yield done()
            count += 1
            canvas = None
        if canvas is None:
            canvas, boxes, labels, names = np.full((height, width, 3), CANVAS, np.uint8), [], [], []
            x = y = row = 0
        canvas[y:y + h, x:x + w] = scene
        boxes.extend((annotation.boxes * scale + np.array([x, y, x, y], np.float32)).tolist())
        labels.extend(annotation.labels)
        names.append(annotation.filename)
        x, row = x + w + GAP, max(row, h)
    if canvas is None:
        raise InputError("no scenes to pack")
    yield done()
