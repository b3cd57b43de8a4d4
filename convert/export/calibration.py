"""Real calibration images for int8 quantization (never random noise)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from maskwatch.edge.errors import InputError
from maskwatch.edge.image import IMAGE_SUFFIXES, letterbox, read_image
from maskwatch.benchmarks.accuracy.splits import select

log = logging.getLogger(__name__)


def image_files(folder: str | Path) -> list[Path]:
    """Image files directly in or below ``folder``, sorted; InputError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of images")
    try:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except PermissionError as exc:
        raise InputError(f"{folder}: cannot be read ({exc.strerror})") from None
    if not files:
        raise InputError(f"{folder}: holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def calibration_set(folder: str | Path, count: int, split: str = "train") -> list[Path]:
    """Up to ``count`` images from ``folder`` on ``split`` (see :mod:`maskwatch.benchmarks.accuracy.splits`), evenly spread."""
    files = select(image_files(folder), split)
    if not files:
        raise InputError(f"{folder}: no images on the {split} side of the split; use --calib-split all")
    if len(files) > count:
        files = [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]
    return files


def letterboxed_tensors(files: list[Path], height: int, width: int) -> list[np.ndarray]:
    """Float32 (1, H, W, 3) RGB 0..255 tensors; unreadable files are skipped with a warning."""
    tensors = []
    for path in files:
        try:
            image, _ = letterbox(read_image(path), height, width)
        except InputError as exc:
            log.warning("skipping calibration image: %s", exc)
            continue
        tensors.append(image[None].astype(np.float32))
    if not tensors:
        raise InputError(f"none of the {len(files)} calibration images could be read (first: {files[0]})")
    return tensors
