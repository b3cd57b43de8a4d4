"""The built-in sample clip: the photo shipped in the package, panned across a 640x480 frame.

It lets ``maskwatch run`` show the whole pipeline on a device with no camera
and no data: one unmasked face walks across the frame for ``frames`` frames.
"""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from .image import read_image

SAMPLE_IMAGE = "astronaut.jpg"


def sample_image() -> Path:
    """The image that ships inside the package (a public-domain NASA portrait)."""
    return Path(str(resources.files(__package__) / "assets" / SAMPLE_IMAGE))


class SampleClip:
    """A finite, deterministic source of BGR frames; ``read()`` returns None at the end."""

    live = False

    def __init__(self, frames: int = 90, width: int = 640, height: int = 480):
        self.name, self.frames, self.size = "sample", frames, (width, height)
        self._index = 0
        self._face = None

    def open(self) -> None:
        width, height = self.size
        photo = read_image(sample_image())
        side = int(height * 0.6)
        self._face = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)

    def read(self):
        from .sources import Frame

        if self._face is None:
            self.open()
        if self._index >= self.frames:
            return None
        width, height = self.size
        side = self._face.shape[0]
        canvas = np.full((height, width, 3), 70, np.uint8)
        x = int((width - side) * self._index / max(1, self.frames - 1))
        y = (height - side) // 2
        canvas[y:y + side, x:x + side] = self._face
        frame = Frame(image=canvas, index=self._index, timestamp=time.monotonic(), source=self.name)
        self._index += 1
        return frame

    def close(self) -> None:
        self._face = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()
