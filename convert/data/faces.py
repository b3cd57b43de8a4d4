"""Face crops for training the mask classifier, and a report of what was kept or skipped.

Two sources, each returning ``(samples, report)``:

* :func:`load_voc_faces`: PASCAL VOC scenes (``<root>/images``, ``<root>/annotations/*.xml``).
  Box coordinates are read as pixel edges (width = ``xmax - xmin``). Per box, in order:

  - label not in :data:`CLASSES`: ``InputError`` naming the xml file and label, or with
    ``on_unknown="skip"`` skipped as ``unknown_label``;
  - zero or negative width or height: skipped as ``degenerate``;
  - no part inside the image: skipped as ``outside_image``;
  - shorter side of the part inside the image under ``min_face`` px: skipped as
    ``too_small`` (such faces carry too few pixels to tell a mask from a chin, and the
    detector finds few of them anyway); a box that runs past the border is clipped
    and kept, and counted in ``report.clipped``;
  - the crop is the box grown by ``margin`` times its width on the left and on the
    right (and its height above and below), clipped to the image.

  A malformed XML file, or one whose image is missing or unreadable, raises
  ``InputError`` naming the file; with ``strict=False`` the file is skipped instead,
  counted in ``report.skipped_files`` (``malformed_xml``, ``missing_image``,
  ``unreadable_image``) and the faces it lists in ``report.skipped`` under the same reason.

* :func:`load_crop_folders`: one subfolder per class, its name mapped through
  :data:`CLASS_ALIASES` (an unknown name raises, or with ``on_unknown="skip"`` its images
  are skipped as ``unknown_label``). A class folder with no image files raises
  ``InputError`` naming it; an image that cannot be decoded is skipped as
  ``unreadable_image``, so no undecodable sample ever reaches training.

Every sample records its source image and that image's side of
:func:`maskwatch.benchmarks.accuracy.splits.split_of` (``val``: fold ``val_fold``, 0 unless cross-validating), so all
faces of one scene, and byte-identical duplicates, fall on the same side. Pixels are RGB ``uint8``; with ``size`` given every
crop is stretched to ``size x size`` (this bounds memory: 4,000 crops at 128 px take
about 200 MB).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from maskwatch.edge.errors import ConfigError, InputError
from maskwatch.edge.image import IMAGE_SUFFIXES, stretch
from maskwatch.benchmarks.accuracy.voc import find_voc_image, read_voc_objects, voc_image_names
from maskwatch.edge.labels import CLASS_ALIASES, CLASSES
from maskwatch.benchmarks.accuracy.splits import split_of


@dataclass(frozen=True, eq=False)
class FaceSample:
    """One face: RGB uint8 pixels (H, W, 3), its class, its source image and that image's split."""

    pixels: np.ndarray
    label: str
    source: Path
    split: str
    #: Crop in source pixels (x0, y0, x1, y1), end exclusive; None for a crop-folder image.
    box: tuple[int, int, int, int] | None = None
    #: Made by :mod:`maskwatch.convert.data.synth_masks` rather than cut from a photo (never used for calibration or scoring).
    synthetic: bool = False
    #: The data set (folder name) it came from; training draws each class's data sets by ``source_power``.
    dataset: str = ""
    #: Shorter side of the face's box in the source image (px); None for a crop-folder image.
    face_px: float | None = None


@dataclass
class FaceReport:
    """Counts of one load: faces kept per class and per (split, class), faces and files skipped per reason."""

    kept: Counter = field(default_factory=Counter)
    by_split: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    skipped_by_class: Counter = field(default_factory=Counter)
    skipped_files: Counter = field(default_factory=Counter)
    clipped: int = 0

    def keep(self, sample: FaceSample) -> FaceSample:
        self.kept[sample.label] += 1
        self.by_split[(sample.split, sample.label)] += 1
        return sample

    def skip(self, reason: str, label: str | None = None, count: int = 1) -> None:
        if count <= 0:
            return
        self.skipped[reason] += count
        if label is not None:
            self.skipped_by_class[label] += count

    def merge(self, other: "FaceReport") -> "FaceReport":
        """A new report adding this one's counts and ``other``'s."""
        return FaceReport(self.kept + other.kept, self.by_split + other.by_split,
                          self.skipped + other.skipped,
                          self.skipped_by_class + other.skipped_by_class,
                          self.skipped_files + other.skipped_files, self.clipped + other.clipped)

    def __str__(self) -> str:
        return (f"kept {sum(self.kept.values())} {dict(self.kept)}; "
                f"splits {dict(sorted(self.by_split.items()))}; skipped {dict(self.skipped)}; "
                f"skipped files {dict(self.skipped_files)}; clipped {self.clipped}")


def _check_options(on_unknown: str, size: int | None, margin: float = 0.0, min_face: int = 0) -> None:
    if on_unknown not in ("raise", "skip"):
        raise ConfigError(f"on_unknown must be 'raise' or 'skip', not {on_unknown!r}")
    if size is not None and size < 1:
        raise ConfigError(f"size must be a positive number of pixels, not {size}")
    if margin < 0 or min_face < 0:
        raise ConfigError(f"margin and min_face must not be negative ({margin}, {min_face})")


def read_rgb(path: Path) -> np.ndarray | None:
    """The RGB uint8 pixels of the image at ``path``, or None when it cannot be read or decoded."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def crop_batch(samples: list[FaceSample], size: int) -> np.ndarray:
    """The samples' pixels stretched to ``size`` x ``size`` and stacked (N, size, size, 3) uint8,
    as the classifier sees them (:func:`maskwatch.edge.image.stretch`)."""
    return np.stack([stretch(s.pixels, size, size) for s in samples])


def _resized(pixels: np.ndarray, size: int | None) -> np.ndarray:
    return np.ascontiguousarray(pixels) if size is None else stretch(pixels, size, size)


def _parse_voc(xml: Path, images: Path) -> tuple[Path, list[tuple[str, tuple[float, ...]]]]:
    """The image path and ``(label, (xmin, ymin, xmax, ymax))`` objects of one VOC file
    (read by :func:`maskwatch.benchmarks.accuracy.voc.read_voc_objects`, whose InputError names the file)."""
    raw = read_voc_objects(xml)
    found = find_voc_image(xml, raw.filename, images)
    return found or images / voc_image_names(xml, raw.filename)[0], raw.objects


def _crop_box(box, width: int, height: int, margin: float, min_face: int) -> tuple[str, tuple | None]:
    """``(reason, None)`` for a box to skip, else ``("clipped" or "", crop box)``."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return "degenerate", None
    vx0, vy0, vx1, vy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if vx1 <= vx0 or vy1 <= vy0:
        return "outside_image", None
    if min(vx1 - vx0, vy1 - vy0) < min_face:
        return "too_small", None
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    crop = (max(math.floor(x0 - mx), 0), max(math.floor(y0 - my), 0),
            min(math.ceil(x1 + mx), width), min(math.ceil(y1 + my), height))
    return ("clipped" if (vx0, vy0, vx1, vy1) != (x0, y0, x1, y1) else ""), crop


def load_voc_faces(root: str | Path, *, margin: float = 0.2, min_face: int = 8,
                   size: int | None = None, on_unknown: str = "raise", strict: bool = True,
                   images: str = "images", annotations: str = "annotations", val_fold: int = 0,
                   ) -> tuple[list[FaceSample], FaceReport]:
    """Face crops from the VOC scenes under ``root`` (rules in the module docstring)."""
    _check_options(on_unknown, size, margin, min_face)
    root = Path(root)
    xmls = sorted((root / annotations).glob("*.xml"))
    if not xmls:
        raise InputError(f"{root / annotations}: no VOC .xml annotations there")
    samples, report = [], FaceReport()
    for xml in xmls:
        try:
            image_path, objects = _parse_voc(xml, root / images)
        except InputError:
            if strict:
                raise
            report.skipped_files["malformed_xml"] += 1
            continue
        for label, _ in objects:
            if label not in CLASSES and on_unknown == "raise":
                raise InputError(f"{xml}: unknown label {label!r} (known: {', '.join(CLASSES)})")
        known = [(label, box) for label, box in objects if label in CLASSES]
        report.skip("unknown_label", count=len(objects) - len(known))
        pixels = read_rgb(image_path)
        if pixels is None:
            reason = "unreadable_image" if image_path.is_file() else "missing_image"
            if strict:
                raise InputError(f"{xml}: its image {image_path} is {reason.split('_')[0]}")
            report.skipped_files[reason] += 1
            for label, _ in known:
                report.skip(reason, label)
            continue
        split = split_of(image_path, val_fold)
        height, width = pixels.shape[:2]
        for label, box in known:
            note, crop = _crop_box(box, width, height, margin, min_face)
            if crop is None:
                report.skip(note, label)
                continue
            report.clipped += note == "clipped"
            x0, y0, x1, y1 = crop
            samples.append(report.keep(FaceSample(
                _resized(pixels[y0:y1, x0:x1], size), label, image_path, split, crop, dataset=root.name,
                face_px=float(min(box[2] - box[0], box[3] - box[1])))))
    return samples, report


def load_crop_folders(root: str | Path, *, aliases: dict[str, str] = CLASS_ALIASES,
                      size: int | None = None, on_unknown: str = "raise", val_fold: int = 0,
                      ) -> tuple[list[FaceSample], FaceReport]:
    """Face crops from ``root/<class folder>/*`` (rules in the module docstring)."""
    _check_options(on_unknown, size)
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise InputError(f"{root}: no class subfolders there")
    samples, report = [], FaceReport()
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        label = aliases.get(folder.name)
        if label is None:
            if on_unknown == "raise":
                raise InputError(f"{folder}: folder name {folder.name!r} is not a known class "
                                 f"(known: {', '.join(sorted(aliases))})")
            report.skip("unknown_label", count=len(files))
            continue
        if not files:
            raise InputError(f"{folder}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in files:
            pixels = read_rgb(path)
            if pixels is None:
                report.skip("unreadable_image", label)
                continue
            samples.append(report.keep(FaceSample(_resized(pixels, size), label, path, split_of(path, val_fold), dataset=root.name)))
    return samples, report


def load_voc_detector_faces(root: str | Path, detector, *, margin: float = 0.2, min_iou: float = 0.4,
                            size: int | None = None, annotations=None, val_fold: int = 0, aligned: bool = False,
                            ) -> tuple[list[FaceSample], FaceReport]:
    """Face crops as the runtime sees them: each annotated face's matching RetinaFace box, cut like
    :class:`maskwatch.edge.classifier.MaskClassifier` cuts it (box grown by ``margin``, clipped; with
    ``aligned``, the face turned upright on the detection's landmarks, :func:`maskwatch.edge.align.aligned_face`),
    labelled from the annotation. Faces the detector misses (IoU < ``min_iou``) are skipped as ``not_detected``.
    ``annotations`` (from :func:`maskwatch.benchmarks.accuracy.voc.load_voc_folder`) limits the images used.
    """
    from maskwatch.edge.align import aligned_face
    from maskwatch.edge.image import margin_box, read_image
    from maskwatch.edge.postprocess import iou
    from maskwatch.benchmarks.accuracy.voc import load_voc_folder

    root = Path(root)
    samples, report = [], FaceReport()
    for a in annotations if annotations is not None else load_voc_folder(root, CLASS_ALIASES):
        path = root / "images" / a.filename
        image = read_image(path)
        faces = detector.detect(image)
        split, taken = split_of(path, val_fold), np.zeros(len(faces), bool)
        for box, label in zip(a.boxes, a.labels):
            overlaps = np.where(taken, -1.0, iou(box, faces.boxes)) if len(faces) else np.zeros(0)
            best = int(np.argmax(overlaps)) if len(overlaps) else -1
            if best < 0 or overlaps[best] < min_iou:
                report.skip("not_detected", label=label)
                continue
            taken[best] = True
            face = faces.boxes[best]
            x0, y0, x1, y1 = margin_box(image.shape, face, margin)
            crop = image[y0:y1, x0:x1]
            if aligned:
                try:
                    crop = aligned_face(image, faces.landmarks[best], margin)
                except ValueError:  # landmarks too close together: the box, as the runtime does
                    pass
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            samples.append(FaceSample(_resized(crop, size), label, path, split, (x0, y0, x1, y1), dataset=root.name,
                                      face_px=float(min(face[2] - face[0], face[3] - face[1]))))
            report.kept[label] += 1
            report.by_split[(split, label)] += 1
    return samples, report


def align_crop_folder_faces(samples: list[FaceSample], detector, *, margin: float = 0.2, size: int | None = None,
                            ) -> tuple[list[FaceSample], int]:
    """Crop-folder faces (whole-face photos) turned upright on the landmarks the detector finds in them,
    as :func:`maskwatch.edge.align.aligned_face` cuts a face on the device; a photo where no face is found
    is kept as it is. Returns the samples and how many were aligned."""
    from dataclasses import replace

    from maskwatch.edge.align import aligned_face
    from maskwatch.convert.data.synth_masks import landmarks_for

    out, aligned = [], 0
    for sample, points in zip(samples, landmarks_for(samples, detector)):
        if points is not None:
            try:
                sample = replace(sample, pixels=aligned_face(sample.pixels, points, margin))
                aligned += 1
            except ValueError:
                pass
        out.append(replace(sample, pixels=_resized(sample.pixels, size)))
    return out, aligned
