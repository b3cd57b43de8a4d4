"""Street-like augmentation of face crops (numpy + OpenCV, seeded).

A pole camera sees faces small, blurred, JPEG-compressed, under changing
light, often partly hidden by other heads. Each transform below mimics one of
those; :func:`augment` applies a random subset to one RGB uint8 crop and
returns it at ``size x size``.
"""
from __future__ import annotations

import cv2
import numpy as np


def jitter_crop(image: np.ndarray, rng: np.random.Generator, min_scale: float = 0.8) -> np.ndarray:
    """A random square-ish sub-window covering ``min_scale``..1 of each side (framing changes)."""
    h, w = image.shape[:2]
    s = rng.uniform(min_scale, 1.0)
    ch, cw = max(1, int(h * s)), max(1, int(w * s * rng.uniform(0.9, 1.1)))
    cw = min(cw, w)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return image[y:y + ch, x:x + cw]


def low_resolution(image: np.ndarray, rng: np.random.Generator, smallest: int = 12) -> np.ndarray:
    """Down to a random 12..size px and back up: a distant face."""
    h, w = image.shape[:2]
    side = int(rng.integers(smallest, max(smallest + 1, min(h, w))))
    small = cv2.resize(image, (max(1, side * w // max(h, w)), max(1, side * h // max(h, w))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.4))


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else image


def colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation changes; sometimes grey (night, infrared)."""
    out = image.astype(np.float32)
    grey = out.mean(axis=2, keepdims=True)
    if rng.random() < 0.08:
        out = np.repeat(grey, 3, axis=2)
    else:
        out = grey + (out - grey) * rng.uniform(0.6, 1.4)
    out = (out - 128) * rng.uniform(0.7, 1.3) + 128 + rng.uniform(-35, 35)
    return np.clip(out, 0, 255).astype(np.uint8)


def occlude(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flat patch over the top or a side (a hat, hair, another head); never over the mouth."""
    out = image.copy()
    h, w = out.shape[:2]
    if rng.random() < 0.5:  # across the top
        out[: int(h * rng.uniform(0.1, 0.3))] = rng.integers(0, 256, 3, dtype=np.uint8)
    else:  # one side
        width = int(w * rng.uniform(0.1, 0.3))
        cols = slice(0, width) if rng.random() < 0.5 else slice(w - width, w)
        out[:, cols] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


#: (transform, probability) in the order applied.
PIPELINE = ((low_resolution, 0.4), (blur, 0.25), (colour, 0.8), (occlude, 0.15), (jpeg, 0.3))


def augment(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One random street-like variant of an RGB uint8 crop, at ``size x size``."""
    out = jitter_crop(image, rng)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = cv2.resize(np.ascontiguousarray(out), (size, size), interpolation=cv2.INTER_AREA)
    for transform, probability in PIPELINE:
        if rng.random() < probability:
            out = transform(out, rng)
    return out
