"""The Raspberry Pi camera (CSI) through Picamera2, with a low-resolution stream for inference.

Configuration used (``Picamera2.create_video_configuration``)::

    main  = {"size": preview_size or (width, height), "format": "RGB888"}  # BGR byte order: OpenCV-ready
    lores = {"size": (width, height), "format": "YUV420"}  # I420, the lores format every Pi supports
    controls = {"FrameDurationLimits": (1e6 / fps,) * 2}   # in microseconds; only when fps is given
    buffer_count = 4, queue = False                        # the newest frame, not a queued one

``read()`` takes one request and gives its lores image converted to BGR. The main stream is
copied out only with a ``preview_size`` (``maskwatch run`` passes ``source.options.preview_size``
only when a preview is configured): it is then the frame's ``display``, which the preview draws
on, boxes found on the lores frame scaled onto it (keep both sizes at the same aspect ratio). Picamera2 comes with Raspberry Pi OS
(``sudo apt install python3-picamera2``; make the venv with ``--system-site-packages``)::

    with Picamera2Source(width=640, height=480, preview_size=(1280, 960)) as camera:
        frame = camera.read()   # frame.image 640x480 for inference, frame.display 1280x960
"""
from __future__ import annotations

import importlib
import time

import cv2
import numpy as np

from ..errors import RuntimeUnavailable
from . import BaseSource, Frame, SourceError, SourceLost


def picamera2_module():
    """The ``picamera2`` module, or RuntimeUnavailable saying how to install it."""
    try:
        return importlib.import_module("picamera2")
    except ImportError as exc:
        raise RuntimeUnavailable(f"picamera2 cannot be imported ({exc}): on Raspberry Pi OS, sudo apt install "
                                 "python3-picamera2 and create the venv with --system-site-packages") from None


class Picamera2Source(BaseSource):
    """Camera ``camera`` (0 = first CSI camera); lores ``width`` x ``height`` (even) for inference,
    main ``preview_size`` (``None``: no preview, main kept at the lores size and never copied), ``fps`` or 30."""

    live = True

    def __init__(self, camera: int = 0, width: int = 640, height: int = 480, fps: float | None = None,
                 preview_size: tuple[int, int] | None = None):
        self._module = picamera2_module()  # fail at construction, not on the first frame
        self.camera, self.fps = camera, fps
        self.size = (int(width), int(height))
        self.preview_size = tuple(preview_size) if preview_size else None
        self.name = f"picamera2:{camera}"
        self._picam = None
        self._index = 0
        self._lores = self.size

    def open(self) -> None:
        if self._picam is not None:
            return
        try:
            picam = self._module.Picamera2(self.camera)
        except (IndexError, RuntimeError, OSError) as exc:
            raise SourceError(f"{self.name}: cannot open it ({exc})") from None
        try:
            config = picam.create_video_configuration(
                main={"size": self.preview_size or self.size, "format": "RGB888"},
                lores={"size": self.size, "format": "YUV420"},
                controls={"FrameDurationLimits": (int(1e6 / self.fps),) * 2} if self.fps else {},
                buffer_count=4, queue=False)
            picam.configure(config)
            picam.start()
            self._lores = tuple(picam.camera_configuration()["lores"]["size"])  # libcamera may adjust it
        except Exception as exc:  # libcamera raises plain RuntimeError/ValueError for bad sizes
            picam.close()
            raise SourceError(f"{self.name}: cannot start it at lores {self.size}, main "
                              f"{self.preview_size} ({exc})") from None
        self._picam, self._index = picam, 0

    def read(self) -> Frame | None:
        if self._picam is None:
            raise SourceError(f"{self.name}: read before open (or after close)")
        try:
            request = self._picam.capture_request()
            try:
                yuv = request.make_array("lores")
                main = request.make_array("main") if self.preview_size else None
            finally:
                request.release()
        except Exception as exc:
            raise SourceLost(f"{self.name}: capture failed after {self._index} frames ({exc})") from None
        timestamp = time.monotonic()
        width, height = self._lores
        # YUV420 arrives as (height * 3/2, stride): I420 at the stride's width, cropped after conversion
        image = cv2.cvtColor(np.ascontiguousarray(yuv[: height * 3 // 2]), cv2.COLOR_YUV2BGR_I420)[:, :width]
        self._index += 1
        return Frame(np.ascontiguousarray(image), self._index - 1, timestamp, self.name, display=main)

    def close(self) -> None:
        if self._picam is not None:
            picam, self._picam = self._picam, None
            try:
                picam.stop()
            finally:
                picam.close()
