"""Cameras, network streams and video files through ``cv2.VideoCapture``.

A USB camera on a Raspberry Pi or Jetson is ``/dev/video0`` (or its stable
``/dev/v4l/by-id/...`` name) or its index; ask for MJPG to get 720p at 30 fps::

    with Camera("/dev/video0", width=1280, height=720, fps=30, fourcc="MJPG") as camera:
        frame = camera.read()

A live capture whose read fails raises :class:`SourceLost` (wrap it in ``Reconnecting``); a
video file that ends returns ``None``, unless opened with ``live=True``, which makes it behave
like a camera (end of file is a loss, and ``Reconnecting`` plays it again). Every frame goes
through ``to_bgr8``; a frame that cannot be converted, or whose size differs from the first
frame's since opening, is skipped with a warning, and 30 such frames in a row end the capture.
For RTSP over TCP set ``OPENCV_FFMPEG_CAPTURE_OPTIONS="rtsp_transport;tcp"`` before opening.
"""
from __future__ import annotations

import logging
import re
import time

import cv2
import numpy as np

from ..errors import InputError
from ..image import max_image_pixels, to_bgr8, too_many_pixels
from . import BaseSource, Frame, SourceError, SourceLost

log = logging.getLogger(__name__)

#: Unusable frames in a row after which a capture counts as lost (live) or broken (file).
MAX_BAD_FRAMES = 30


class OpenCVSource(BaseSource):
    """One ``cv2.VideoCapture``: ``target`` (index, device, URL or path), ``api`` a ``cv2.CAP_*``
    backend, ``params`` open-time properties, ``props`` properties set after opening."""

    def __init__(self, target: int | str, *, api: int = cv2.CAP_ANY, live: bool = False,
                 params: dict[int, float] | None = None, props: dict[int, float] | None = None,
                 name: str | None = None):
        self.target, self.api, self.live = target, api, live
        self.params, self.props = dict(params or {}), dict(props or {})
        self.name = name or str(target)
        self._capture: cv2.VideoCapture | None = None
        self._index = 0
        self._size: tuple[int, int] | None = None

    def open(self) -> None:
        if self._capture is not None:
            return
        flat = [int(v) for pair in self.params.items() for v in pair]
        capture = cv2.VideoCapture(self.target, self.api, flat) if flat else cv2.VideoCapture(self.target, self.api)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"{self.name}: cannot open it")
        for prop, value in self.props.items():
            if not capture.set(prop, value):
                log.debug("%s: property %s=%s not supported here", self.name, prop, value)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > max_image_pixels():  # refused before any frame is read into the pipeline
            capture.release()
            raise SourceError(f"{self.name}: {too_many_pixels(width, height)}")
        self._capture, self._index, self._size = capture, 0, None

    def read(self) -> Frame | None:
        if self._capture is None:
            raise SourceError(f"{self.name}: read before open (or after close)")
        for _ in range(MAX_BAD_FRAMES):
            ok, image = self._capture.read()
            timestamp = time.monotonic()
            if not ok:
                if self.live:
                    raise SourceLost(f"{self.name}: capture failed after {self._index} frames")
                self._ended()
                return None
            image = self._checked(image)
            if image is not None:
                self._index += 1
                return Frame(image, self._index - 1, timestamp, self.name)
        message = f"{self.name}: {MAX_BAD_FRAMES} unusable frames in a row"
        raise SourceLost(message) if self.live else SourceError(message)

    def _ended(self) -> None:
        """Called once a file source has no more frames."""

    @property
    def fps(self) -> float:
        """The frame rate the capture reports (0.0 when closed or unknown)."""
        return float(self._capture.get(cv2.CAP_PROP_FPS)) if self._capture is not None else 0.0

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _checked(self, image) -> np.ndarray | None:
        """The frame as BGR uint8, or None (with a warning) when it cannot be used."""
        try:
            image = to_bgr8(image, f"{self.name} frame {self._index}")
        except InputError as exc:
            log.warning("%s: frame skipped: %s", self.name, exc)
            return None
        height, width = image.shape[:2]
        if width * height > max_image_pixels():  # a stream whose header said less than it sends
            log.warning("%s: frame skipped: %s", self.name, too_many_pixels(width, height))
            return None
        if self._size is None:
            self._size = image.shape[:2]
        elif image.shape[:2] != self._size:
            log.warning("%s: frame skipped: %dx%d, the stream is %dx%d",
                        self.name, image.shape[1], image.shape[0], self._size[1], self._size[0])
            return None
        return image


class Camera(OpenCVSource):
    """A V4L2/USB camera by index or device path; ``width``/``height``/``fps`` are requests the
    driver may round (the first frame tells the truth); ``fourcc`` e.g. ``"MJPG"``."""

    def __init__(self, device: int | str, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, fourcc: str | None = None, props: dict[int, float] | None = None):
        wanted = {cv2.CAP_PROP_BUFFERSIZE: 1}  # the newest frame, not one queued seconds ago
        if fourcc:
            wanted[cv2.CAP_PROP_FOURCC] = cv2.VideoWriter_fourcc(*fourcc)
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                            (cv2.CAP_PROP_FPS, fps)):
            if value:
                wanted[prop] = value
        api = cv2.CAP_V4L2 if isinstance(device, str) else cv2.CAP_ANY
        super().__init__(device, api=api, live=True, props={**wanted, **(props or {})})

    def open(self) -> None:
        super().open()
        get = self._capture.get
        log.info("%s: opened at %dx%d, %g fps", self.name, get(cv2.CAP_PROP_FRAME_WIDTH),
                 get(cv2.CAP_PROP_FRAME_HEIGHT), get(cv2.CAP_PROP_FPS))


class Stream(OpenCVSource):
    """An RTSP/HTTP stream through FFmpeg; ``timeout`` seconds to open and per read, so a dead
    stream raises SourceLost instead of hanging. A password in the URL is masked in ``name``."""

    def __init__(self, url: str, *, timeout: float = 10.0, props: dict[int, float] | None = None):
        ms = int(timeout * 1000)
        super().__init__(url, api=cv2.CAP_FFMPEG, live=True, props=props, name=re.sub(r"//[^/@]*@", "//***@", url),
                         params={cv2.CAP_PROP_OPEN_TIMEOUT_MSEC: ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC: ms})


class VideoFile(OpenCVSource):
    """A video file, frame by frame as fast as it decodes; ``live=True`` treats it as a camera."""

    def __init__(self, path: str, *, live: bool = False, props: dict[int, float] | None = None):
        super().__init__(str(path), api=cv2.CAP_FFMPEG, live=live, props=props)

    def _ended(self) -> None:
        """A file that ends well before the frame count its header gives is cut short: said, once."""
        expected = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if expected > 0 and self._index < expected - 1 and not self._warned_short:
            self._warned_short = True
            log.warning("%s: ended after %d of the %d frames its header gives (truncated or damaged?)",
                        self.name, self._index, expected)

    _warned_short = False
