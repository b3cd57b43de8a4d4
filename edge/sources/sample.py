"""The built-in sample clip: the photo shipped in the package, panned across a 640x480 frame.

It lets ``maskwatch run`` show the whole pipeline on a device with no camera
and no data: one unmasked face walks across the frame for ``frames`` frames.
It is the source ``sample`` (the config's default), with options ``frames``,
``width`` and ``height``.
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from ..errors import ConfigError
from ..image import read_image
from ..sample import sample_image
from . import BaseSource, Frame


class SampleClip(BaseSource):
    """A finite, deterministic source of BGR frames; ``read()`` returns None at the end."""

    live = False

    def __init__(self, frames: int = 90, width: int = 640, height: int = 480):
        if frames < 1 or width < 32 or height < 32:
            raise ConfigError(f"sample source: frames ({frames}) must be at least 1, width ({width}) and height "
                              f"({height}) at least 32")
        self.name, self.frames, self.size = "sample", int(frames), (int(width), int(height))
        self._index = 0
        self._face = None

    def open(self) -> None:
        width, height = self.size
        photo = read_image(sample_image())
        side = int(height * 0.6)
        self._face = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)

    def read(self) -> Frame | None:
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
