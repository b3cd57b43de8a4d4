"""Image helpers shared by the detector and classifier: reading and letterboxing.

``read_image`` refuses, before decoding, an image whose header says more than
:data:`MAX_IMAGE_PIXELS` pixels (``MASKWATCH_MAX_IMAGE_PIXELS`` changes the cap), and one
whose size cannot be read from its header (a format other than PNG, JPEG, BMP, GIF, WebP,
TIFF or PNM: see ``image_header.py``): a small compressed file must not decode to gigabytes
and bring the OOM killer.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import ConfigError, InputError, shorten
from .image_header import image_size

log = logging.getLogger(__name__)

#: Detector inputs must be multiples of the largest anchor stride.
STRIDE_MULTIPLE = 32
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Most pixels an image file may decode to (50 MP: a 48 MP phone photo fits; 150 MB as 8-bit BGR).
MAX_IMAGE_PIXELS = 50_000_000
MAX_PIXELS_ENV = "MASKWATCH_MAX_IMAGE_PIXELS"


def too_many_pixels(width: int, height: int, cap: int | None = None) -> str:
    """What an image or a video frame over the pixel cap is told."""
    cap = max_image_pixels() if cap is None else cap
    return f"{width}x{height} pixels is more than the {cap:,} an image may have (set {MAX_PIXELS_ENV} to change it)"


def max_image_pixels() -> int:
    """The pixel cap: ``MASKWATCH_MAX_IMAGE_PIXELS`` when set, else :data:`MAX_IMAGE_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={text!r}: give a whole number of pixels, at least 1")
    return value


def _glob(pattern: str) -> list[Path]:
    """``pattern``'s matches, ``**`` included, never following a symbolic link to a folder (a link
    loop would make the search endless): pathlib's glob from the pattern's first magic part."""
    import glob

    parts = Path(pattern).parts
    first = next((i for i, part in enumerate(parts) if glob.has_magic(part)), None)
    if first is None:  # no pattern at all: a path that is neither a file nor a folder
        return []
    return list(Path(*parts[:first]).glob(str(Path(*parts[first:]))))


def expand_images(specs) -> list[Path]:
    """Image files from files, folders (searched recursively) and glob patterns, in order, once each.
    Symbolic links to folders are not followed, so a link loop cannot make the search endless."""
    found: dict[Path, None] = {}
    for spec in specs:
        spec = str(spec)
        path = Path(spec)
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except OSError as exc:
            raise InputError(f"{shorten(spec)}: {exc.strerror or exc}") from None
        if is_dir:
            matches = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif is_file:
            matches = [path]
        else:
            matches = sorted(p for p in _glob(spec) if p.suffix.lower() in IMAGE_SUFFIXES)
        if not matches:
            raise InputError(f"{shorten(spec)}: no image files there")
        found.update(dict.fromkeys(matches))
    return list(found)


@dataclass
class ReadableImages:
    """``files`` as ``(path, BGR image)`` pairs, each unreadable one skipped with a one-line warning
    naming it (a batch over a folder does not stop at one broken file); ``skipped`` holds their errors."""

    files: list[Path]
    skipped: list[InputError] = field(default_factory=list)

    def __iter__(self):
        for path in self.files:
            try:
                image = read_image(path)
            except InputError as exc:
                if len(self.files) > 1:  # a lone file's error is the command's error
                    log.warning("%s (skipped)", exc)
                self.skipped.append(exc)
                continue
            yield path, image

    def exit_status(self) -> int:
        """0 when every file was read, 1 when some were skipped; InputError when none could be read."""
        if not self.skipped:
            return 0
        if len(self.skipped) == len(self.files):
            more = f"; none of the {len(self.files)} image files could be read" if len(self.files) > 1 else ""
            raise InputError(f"{self.skipped[0]}{more}")
        log.warning("%d of %d image files skipped (unreadable)", len(self.skipped), len(self.files))
        return 1


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """An image file as 8-bit, 3-channel BGR (OpenCV's order); InputError naming it otherwise, also when
    its header says more than ``max_pixels`` (default :func:`max_image_pixels`), checked before decoding."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    data = np.fromfile(str(path), dtype=np.uint8)
    if not data.size:
        raise InputError(f"{path}: not a readable image (empty file)")
    size = image_size(data.data)
    if size is None:                    # not PNG, JPEG, BMP, GIF, WebP, TIFF or PNM, or the header is cut short
        raise InputError(f"{path}: not a readable image")
    cap = max_image_pixels() if max_pixels is None else max_pixels
    if size[0] * size[1] > cap:
        raise InputError(f"{path}: {too_many_pixels(size[0], size[1], cap)}")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:            # a decoder's own check (OPENCV_IO_MAX_IMAGE_PIXELS), or a broken file
        detail = str(exc).strip().splitlines()[-1].rpartition(" error: ")[2]
        raise InputError(f"{path}: not a readable image (OpenCV: {detail[:200]})") from None
    if image is None:
        raise InputError(f"{path}: not a readable image")
    return to_bgr8(image, str(path))


def to_bgr8(image: np.ndarray, name: str = "frame") -> np.ndarray:
    """Grey, BGRA and 16-bit images to 8-bit BGR; anything else is an InputError."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise InputError(f"{name}: expected an HxW or HxWxC image array, got {getattr(image, 'shape', type(image).__name__)}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"{name}: pixel type {image.dtype} is not supported (uint8 or uint16)")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] != 3:
        raise InputError(f"{name}: {image.shape[2]} channels is not supported (1, 3 or 4)")
    return image


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into a model input: scaled, placed top-left, zero-padded."""

    scale_x: float
    scale_y: float
    input_height: int
    input_width: int

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2k) interleaved x, y input coordinates back to frame pixels."""
        out = xy.astype(np.float32, copy=True)
        out[..., 0::2] /= self.scale_x
        out[..., 1::2] /= self.scale_y
        return out


def fit_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """Input size for a dynamic-shape model: longest side ``longest``, both sides multiples of 32."""
    scale = longest / max(height, width)
    round_up = lambda v: max(STRIDE_MULTIPLE, -(-int(round(v * scale)) // STRIDE_MULTIPLE) * STRIDE_MULTIPLE)
    return round_up(height), round_up(width)


def letterbox(frame_bgr: np.ndarray, height: int, width: int, rgb: bool = True) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio, pad bottom/right with black; returns uint8 HxWx3."""
    h, w = frame_bgr.shape[:2]
    scale = min(height / h, width / w)
    new_w, new_h = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    resized = stretch(frame_bgr, new_w, new_h)
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB) if rgb else resized
    return canvas, Letterbox(new_w / w, new_h / h, height, width)


def stretch(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to ``width`` x ``height`` (aspect not kept): pixel areas averaged when it
    shrinks, bilinear when it grows. One rule for training, calibration and the device: OpenCV's
    INTER_AREA enlarges like nearest neighbour, and a small face enlarged blocky on the device but
    smooth in training is misread."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return np.ascontiguousarray(image)
    shrink = h >= height and w >= width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def margin_box(shape, box, margin: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), end exclusive: the box grown by ``margin`` of its width (left,
    right) and height (top, bottom), clipped to a frame of ``shape``; (0, 0, 1, 1) when nothing is left."""
    h, w = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(np.floor(x1 - dx))), max(0, int(np.floor(y1 - dy)))
    right, bottom = min(w, int(np.ceil(x2 + dx))), min(h, int(np.ceil(y2 + dy)))
    return (left, top, right, bottom) if right > left and bottom > top else (0, 0, 1, 1)


def crop_with_margin(frame: np.ndarray, box, margin: float) -> np.ndarray:
    """The pixels of :func:`margin_box`: what the classifier sees of a face."""
    left, top, right, bottom = margin_box(frame.shape, box, margin)
    return frame[top:bottom, left:right]
