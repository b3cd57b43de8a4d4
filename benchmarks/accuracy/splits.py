"""The project's one train/validation split rule, by image content.

An image's side is decided by the sha1 of its bytes, so the split is
deterministic, needs no list file, and byte-identical duplicates (the
andrewmvd set has five such pairs with different labels) always land on the
same side. Calibration and training use ``train``; verification and
evaluation use ``val``.

The same hash deals images into :data:`FOLDS` folds; ``val`` is fold 0.
Cross-validation (``train-classifier --val-fold K``) holds out fold K instead,
so that each image is scored once over the five runs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

#: Percentage of images on the validation side.
VAL_PERCENT = 20
#: Folds of VAL_PERCENT each; the validation side is fold 0.
FOLDS = 100 // VAL_PERCENT


def fold_of(path: str | Path) -> int:
    """The fold (0 to FOLDS - 1) of the image file at ``path``, from the sha1 of its bytes."""
    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    return int(digest[:8], 16) % 100 // VAL_PERCENT


def split_of(path: str | Path, val_fold: int = 0) -> str:
    """``"train"`` or ``"val"`` for the image file at ``path`` (``val``: fold ``val_fold``)."""
    return "val" if fold_of(path) == val_fold else "train"


def select(paths, split: str) -> list[Path]:
    """The paths on ``split`` (``train``, ``val`` or ``all``), order kept."""
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be train, val or all, not {split!r}")
    return [Path(p) for p in paths if split == "all" or split_of(p) == split]
