"""Image lists: a folder (searched recursively), a glob pattern or one image file.

Images are read in sorted order through ``maskwatch.edge.image.read_image`` (so always 8-bit BGR); one
that cannot be read, or whose header says more pixels than the cap (``MASKWATCH_MAX_IMAGE_PIXELS``), is
skipped with a warning naming it. ``Frame.source`` is the image's path,
so outputs can be written under the same name::

    with ImageList("photos/") as images:
        for frame in images: print(frame.source, frame.image.shape)
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import InputError
from ..image import expand_images, read_image
from . import BaseSource, Frame, SourceError

log = logging.getLogger(__name__)


class ImageList(BaseSource):
    """The images ``spec`` names, one frame each, then ``None``."""

    live = False

    def __init__(self, spec: str | Path):
        self.name = str(spec)
        self.paths: list[Path] = []
        self._next: int | None = None
        self._index = 0

    def open(self) -> None:
        if self._next is not None:
            return
        try:
            self.paths = expand_images([self.name])
        except InputError as exc:
            raise SourceError(str(exc)) from None
        self._next, self._index = 0, 0

    def read(self) -> Frame | None:
        if self._next is None:
            raise SourceError(f"{self.name}: read before open (or after close)")
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            try:
                image = read_image(path)
            except InputError as exc:
                log.warning("%s: skipped: %s", self.name, exc)
                continue
            self._index += 1
            return Frame(image, self._index - 1, time.monotonic(), str(path))
        return None

    def close(self) -> None:
        self._next = None
