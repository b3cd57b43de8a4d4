"""PASCAL VOC XML, the one reader of annotated scenes (evaluation and training).

Boxes are ``x1, y1, x2, y2`` pixel edges (a box ``0 0 10 10`` is 10 px wide; no VOC ``+1``),
float32, shape (N, 4). Each scene folder holds ``annotations/*.xml`` and ``images/``.
"""
from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from maskwatch.edge.errors import InputError
from maskwatch.edge.image import IMAGE_SUFFIXES
from maskwatch.edge.labels import CLASSES

log = logging.getLogger(__name__)

#: File names tried for a VOC file's image after its ``<filename>``: ``<xml stem><suffix>``.
VOC_IMAGE_SUFFIXES = IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES)


class VocAnnotation(NamedTuple):
    """One VOC XML file: the image's name (``None`` if the XML has none), size, boxes and labels."""

    filename: str | None
    width: int
    height: int
    boxes: np.ndarray  #: (N, 4) float32 pixel edges, clipped to the image
    labels: list[str]


def _number(obj: ET.Element, field: str, where: str) -> float:
    text = obj.findtext(field)
    if text is None or not text.strip():
        raise InputError(f"{where} has no <{field.rpartition('/')[2]}>")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{where}: <{field.rpartition('/')[2]}> is not a finite number ({text.strip()[:40]!r})")
    return value


class VocObjects(NamedTuple):
    """One VOC XML file as written: the image's name (``None`` if absent), its ``(width, height)``
    (``None`` without ``<size>``), and ``(name, (xmin, ymin, xmax, ymax))`` per object, unclipped."""

    filename: str | None
    size: tuple[int, int] | None
    objects: list[tuple[str, tuple[float, float, float, float]]]


def read_voc_objects(xml_path) -> VocObjects:
    """The one VOC XML reader (evaluation here, training crops in :mod:`maskwatch.convert.data.faces`).

    Raises :class:`InputError` naming the file for unreadable or malformed XML, a root other than
    ``<annotation>``, a ``<size>`` without a positive whole width and height, and an object without
    a ``<name>`` or a finite ``xmin ymin xmax ymax``. Labels and boxes are not judged here.
    """
    where = str(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{where}: malformed XML ({exc})") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({exc.strerror or exc})") from None
    if root.tag != "annotation":
        raise InputError(f"{where}: not a PASCAL VOC annotation (root element <{root.tag}>, expected <annotation>)")
    size = None
    if root.find("size") is not None:
        width, height = (_number(root, f"size/{key}", where) for key in ("width", "height"))
        if width <= 0 or height <= 0 or width != int(width) or height != int(height):
            raise InputError(f"{where}: image size {width:g}x{height:g} is not a positive whole number of pixels")
        size = int(width), int(height)
    objects = []
    for n, obj in enumerate(root.iter("object"), 1):
        here = f"{where}: object {n}"
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise InputError(f"{here} has no <name>")
        box = tuple(_number(obj, f"bndbox/{key}", here) for key in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((name, box))
    return VocObjects((root.findtext("filename") or "").strip() or None, size, objects)


def read_voc_annotations(xml_path, aliases: Mapping[str, str] | None = None) -> VocAnnotation:
    """Parse one PASCAL VOC XML file into ``(filename, width, height, boxes, labels)``.

    Every ``<object>`` needs a ``<name>`` (one of :data:`CLASSES`, after ``aliases`` maps other
    spellings onto them, e.g. ``{"mask": "with_mask"}``) and a ``<bndbox>`` with ``xmin ymin xmax
    ymax``, read as pixel edges and clipped to ``<size>`` (required here). A box with no area left
    after clipping (zero or negative width or height, or wholly outside the image) is dropped, and
    one warning per file counts them. ``<filename>`` may be absent (then ``filename`` is ``None``).

    Raises :class:`InputError` naming the file for what :func:`read_voc_objects` refuses, a missing
    size or an unknown label.
    """
    where = str(xml_path)
    raw = read_voc_objects(xml_path)
    if raw.size is None:
        raise InputError(f"{where} has no <width> (no <size>)")
    width, height = raw.size
    aliases = aliases or {}
    boxes, labels, dropped = [], [], 0
    for n, (name, (x1, y1, x2, y2)) in enumerate(raw.objects, 1):
        label = aliases.get(name, name)
        if label not in CLASSES:
            raise InputError(f"{where}: object {n}: unknown label {name!r} (expected one of {', '.join(CLASSES)})")
        x1, x2 = np.clip([x1, x2], 0, width)
        y1, y2 = np.clip([y1, y2], 0, height)
        if x2 <= x1 or y2 <= y1:
            dropped += 1
            continue
        boxes.append((x1, y1, x2, y2))
        labels.append(label)
    if dropped:
        log.warning("%s: dropped %d degenerate box%s (no area inside the %dx%d image)",
                    where, dropped, "" if dropped == 1 else "es", width, height)
    return VocAnnotation(raw.filename, width, height, np.array(boxes, np.float32).reshape(-1, 4), labels)


def _natural(path: Path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def voc_image_names(xml: Path, filename: str | None) -> list[str]:
    """Where a VOC file's image may be, in the order tried: its ``<filename>``, then its stem with
    each of :data:`VOC_IMAGE_SUFFIXES`."""
    return ([Path(filename).name] if filename else []) + [xml.stem + s for s in VOC_IMAGE_SUFFIXES]


def find_voc_image(xml: Path, filename: str | None, images: Path) -> Path | None:
    """The first of :func:`voc_image_names` that is a file in ``images``, or None."""
    return next((images / name for name in voc_image_names(xml, filename) if (images / name).is_file()), None)


def load_voc_folder(root, aliases: Mapping[str, str] | None = None) -> list[VocAnnotation]:
    """Every ``root/annotations/*.xml`` (natural order: 2 before 10), each checked against ``root/images``.

    The image is found by :func:`find_voc_image`; the returned ``filename`` is the one found. Raises
    :class:`InputError` naming the folder when it holds no annotations, and naming the XML when
    its image is missing.
    """
    root = Path(root)
    folder = root / "annotations"
    xmls = sorted(folder.glob("*.xml"), key=_natural) if folder.is_dir() else []
    if not xmls:
        raise InputError(f"{root}: holds no annotations (expected {folder}/*.xml)")
    images = root / "images"
    result = []
    for xml in xmls:
        annotation = read_voc_annotations(xml, aliases)
        found = find_voc_image(xml, annotation.filename, images)
        if found is None:
            raise InputError(f"{xml}: image {images / voc_image_names(xml, annotation.filename)[0]} not found")
        result.append(annotation._replace(filename=found.name))
    return result
