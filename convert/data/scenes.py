"""Annotated street scenes for training the detector, and a count of what was kept or skipped.

:func:`load_voc_scenes` reads a PASCAL VOC folder (``<root>/images``, ``<root>/annotations/*.xml``)
through :func:`maskwatch.benchmarks.accuracy.voc.read_voc_objects`. Nothing stops a load part-way: a file
that cannot be used is skipped and counted in ``report.skipped_files`` (``malformed_xml``,
``missing_image``, ``unreadable_image``), and so is a box (``report.skipped``: ``unknown_label``,
``degenerate`` for no width or height, ``outside_image`` for no part inside it). A box that runs
past the border is clipped, kept and counted in ``report.clipped``. Each scene records its side
of :func:`maskwatch.benchmarks.accuracy.splits.split_of` (``val`` is fold ``val_fold``), so byte-identical
duplicates fall on the same side.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskwatch.edge.errors import InputError
from maskwatch.edge.labels import CLASS_ALIASES, CLASSES
from maskwatch.benchmarks.accuracy.voc import find_voc_image, read_voc_objects
from maskwatch.benchmarks.accuracy.splits import split_of

from maskwatch.convert.data.faces import read_rgb


@dataclass(frozen=True)
class Scene:
    path: Path
    split: str  #: "train" or "val"
    pixels: np.ndarray  #: RGB uint8 (H, W, 3)
    boxes: np.ndarray  #: (N, 4) float32 x1, y1, x2, y2 pixel edges, inside the image
    labels: np.ndarray  #: (N,) int64 indices into CLASSES


@dataclass
class SceneReport:
    """Counts of one load: scenes per split, faces per class, boxes and files skipped per reason."""

    scenes: Counter = field(default_factory=Counter)
    faces: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    skipped_files: Counter = field(default_factory=Counter)
    clipped: int = 0

    def __str__(self) -> str:
        return (f"scenes {dict(sorted(self.scenes.items()))}; faces {dict(sorted(self.faces.items()))}; "
                f"skipped boxes {dict(self.skipped)}; skipped files {dict(self.skipped_files)}; clipped {self.clipped}")


def _box(box, width: int, height: int) -> tuple[str, tuple | None]:
    """``(reason, None)`` for a box to skip, else ``("clipped" or "", box inside the image)``."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return "degenerate", None
    inside = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
    if inside[2] <= inside[0] or inside[3] <= inside[1]:
        return "outside_image", None
    return ("clipped" if inside != tuple(box) else ""), inside


def load_voc_scenes(root: str | Path, val_fold: int = 0, limit: int | None = None) -> tuple[list[Scene], SceneReport]:
    """The scenes under ``root`` with their face boxes and labels (rules in the module docstring).

    ``limit`` keeps the first N annotation files (quick runs). Raises InputError naming the folder
    only when it holds no annotations at all.
    """
    root = Path(root)
    xmls = sorted((root / "annotations").glob("*.xml"))[:limit]
    if not xmls:
        raise InputError(f"{root / 'annotations'}: no VOC .xml annotations there")
    scenes, report = [], SceneReport()
    for xml in xmls:
        try:
            raw = read_voc_objects(xml)
        except InputError:
            report.skipped_files["malformed_xml"] += 1
            continue
        image_path = find_voc_image(xml, raw.filename, root / "images")
        pixels = read_rgb(image_path) if image_path else None
        if pixels is None:
            report.skipped_files["unreadable_image" if image_path else "missing_image"] += 1
            continue
        height, width = pixels.shape[:2]
        boxes, labels = [], []
        for name, box in raw.objects:
            label = CLASS_ALIASES.get(name)
            if label is None:
                report.skipped["unknown_label"] += 1
                continue
            note, inside = _box(box, width, height)
            if inside is None:
                report.skipped[note] += 1
                continue
            report.clipped += note == "clipped"
            boxes.append(inside)
            labels.append(CLASSES.index(label))
            report.faces[label] += 1
        split = split_of(image_path, val_fold)
        report.scenes[split] += 1
        scenes.append(Scene(image_path, split, pixels, np.array(boxes, np.float32).reshape(-1, 4),
                            np.array(labels, np.int64)))
    return scenes, report


__all__ = ["Scene", "SceneReport", "load_voc_scenes"]
