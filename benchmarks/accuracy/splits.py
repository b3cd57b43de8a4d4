"""The project's one train/validation split rule, by image content.

An image's fold is decided by the sha1 of its bytes, so the split is deterministic and needs no
list file. Near-duplicates (re-encoded or resized copies, frames of one recording session) go with
each other: within the folder holding an image, images whose 256-bit difference hashes differ in
at most :data:`NEAR_BITS` bits are grouped (transitively), and every member of a group takes the
fold of the member with the smallest sha1. An image with no near-duplicate keeps its own fold.
Calibration and training use ``train``; verification and evaluation use ``val``.

The same rule deals images into :data:`FOLDS` folds; ``val`` is fold 0.
Cross-validation (``train-classifier --val-fold K``) holds out fold K instead,
so that each image is scored once over the five runs.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import cv2
import numpy as np

from maskwatch.edge.image import IMAGE_SUFFIXES

#: Percentage of images on the validation side.
VAL_PERCENT = 20
#: Folds of VAL_PERCENT each; the validation side is fold 0.
FOLDS = 100 // VAL_PERCENT
#: Side of the difference hash (HASH_SIDE x HASH_SIDE bits) and the most bits two near-duplicates differ in:
#: on the scene sets, frames of one session differ in up to about 50, unrelated photos from about 51.
HASH_SIDE = 16
NEAR_BITS = 40


def sha1_fold(path: str | Path) -> int:
    """The fold the sha1 of the file's bytes gives, before near-duplicates are grouped."""
    return int(_sha1(Path(path)), 16) % 100 // VAL_PERCENT


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:8]


def difference_hash(path: str | Path) -> np.ndarray | None:
    """(HASH_SIDE**2,) bool: is each pixel of a small grey copy brighter than its left neighbour; None
    for a file OpenCV cannot read."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        return None
    small = cv2.resize(grey, (HASH_SIDE + 1, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.int16)
    return (small[:, 1:] > small[:, :-1]).reshape(-1)


@functools.lru_cache(maxsize=256)
def _folder_folds(folder: str, _changed: int) -> dict[str, int]:
    """File name -> fold for every image in ``folder``, near-duplicates grouped (``_changed``: the
    folder's modification time, so a changed folder is read again)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    hashes = [(p, difference_hash(p)) for p in paths]
    hashes = [(p, h) for p, h in hashes if h is not None]
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if hashes:
        bits = np.stack([h for _, h in hashes])
        for i in range(len(bits)):
            near = np.flatnonzero((bits[i + 1:] != bits[i]).sum(1) <= NEAR_BITS) + i + 1
            for j in near:
                parent[root(int(j))] = root(i)
    sha = {p.name: _sha1(p) for p, _ in hashes}
    smallest: dict[int, str] = {}
    for i, (p, _) in enumerate(hashes):
        r = root(i)
        smallest[r] = min(smallest.get(r, sha[p.name]), sha[p.name])
    return {p.name: int(smallest[root(i)], 16) % 100 // VAL_PERCENT for i, (p, _) in enumerate(hashes)}


def fold_of(path: str | Path) -> int:
    """The fold (0 to FOLDS - 1) of the image file at ``path``: its group's, near-duplicates in its folder
    grouped (a file that is no readable image: the sha1 of its bytes)."""
    path = Path(path)
    folder = path.parent.resolve()
    folds = _folder_folds(str(folder), folder.stat().st_mtime_ns)
    return folds[path.name] if path.name in folds else sha1_fold(path)


def split_of(path: str | Path, val_fold: int = 0) -> str:
    """``"train"`` or ``"val"`` for the image file at ``path`` (``val``: fold ``val_fold``)."""
    return "val" if fold_of(path) == val_fold else "train"


def select(paths, split: str) -> list[Path]:
    """The paths on ``split`` (``train``, ``val`` or ``all``), order kept."""
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be train, val or all, not {split!r}")
    return [Path(p) for p in paths if split == "all" or split_of(p) == split]
