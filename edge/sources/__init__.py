"""Frame sources for ``maskwatch run --source ...``: cameras, streams, video files, image lists.

Every source has the same small interface (:class:`Source`): ``open()``, ``read()`` giving a
:class:`Frame` or ``None`` when the stream ended cleanly, an idempotent ``close()``, and use as a
context manager. ``live`` says whether the source is a camera or stream that should be reopened
when it is lost; :func:`with_reconnect` wraps such a source in :class:`Reconnecting`, and
:class:`Threaded` moves capture onto a background thread so it overlaps inference::

    with Threaded(with_reconnect(open_source("/dev/video0", width=1280, height=720))) as source:
        while (frame := source.read()) is not None: ...

``open_source`` picks the class from the spec (see :func:`source_kind`); each kind lives in one
module, imported only when chosen, so a Raspberry Pi without Picamera2 can still read files.
"""
from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, MaskwatchError, shorten
from ..image import IMAGE_SUFFIXES
from ..registry import Entry, Registry

VIDEO_SUFFIXES = (".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".h264")

#: kind -> its class, with the options open_source passes on
KINDS = Registry("source kind", {
    "camera": Entry("maskwatch.edge.sources.opencv:Camera", ("width", "height", "fps", "fourcc", "props")),
    "stream": Entry("maskwatch.edge.sources.opencv:Stream", ("timeout", "props")),
    "video": Entry("maskwatch.edge.sources.opencv:VideoFile", ("live", "props")),
    "images": Entry("maskwatch.edge.sources.images:ImageList", ()),
    "picamera2": Entry("maskwatch.edge.sources.picamera2:Picamera2Source", ("camera", "width", "height", "fps", "preview_size")),
    "sample": Entry("maskwatch.edge.sources.sample:SampleClip", ("frames", "width", "height")),
})
#: kinds whose class takes no target (the spec only names the kind)
NO_TARGET = ("picamera2", "sample")


class SourceError(MaskwatchError, IOError):
    """A camera, stream, file or folder cannot be opened or read."""


class SourceLost(SourceError):
    """A live source stopped delivering frames (unplugged camera, dropped stream)."""


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    ``image`` is 8-bit BGR, HxWx3; ``index`` counts the frames this source delivered since it
    was opened, from 0; ``timestamp`` is ``time.monotonic()`` at capture; ``source`` names where
    it came from (the spec, or the image file's path for image lists). ``display``, when a source
    has one (Picamera2's main stream with a preview), is a larger picture of the same moment at the
    same aspect ratio, for previews only: boxes found on ``image`` map onto it by scaling.
    """

    image: np.ndarray = field(repr=False)
    index: int
    timestamp: float
    source: str
    display: np.ndarray | None = field(default=None, repr=False)


@runtime_checkable
class Source(Protocol):
    """What the pipeline reads frames from.

    ``read()`` on a source that is not open raises SourceError; a live source whose capture
    fails raises SourceLost; ``None`` means the stream ended cleanly (or a wrapper was closed).
    """

    name: str
    live: bool

    def open(self) -> None: ...
    def read(self) -> Frame | None: ...
    def close(self) -> None: ...
    def __enter__(self): ...
    def __exit__(self, *exc) -> None: ...


class BaseSource:
    """Context manager and iteration shared by the sources: ``for frame in source``."""

    name: str = "source"
    live: bool = False
    #: close() may be called from another thread while read() waits, and makes it return None
    interruptible: bool = False

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        while (frame := self.read()) is not None:
            yield frame

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def source_kind(spec: str) -> str:
    """Which kind of source ``spec`` names; SourceError naming it when none.

    ``0``, ``/dev/video0``, ``/dev/v4l/...`` -> camera; ``rtsp://``, ``http(s)://`` -> stream;
    ``picamera2`` -> picamera2; ``sample`` -> the built-in clip; a video file (:data:`VIDEO_SUFFIXES`) -> video; a folder,
    glob pattern or image file -> images.
    """
    text = str(spec).strip()
    path = Path(text)
    if text.lower() in NO_TARGET:
        return text.lower()
    if text.isdigit() or re.fullmatch(r"/dev/video\d+", text) or text.startswith("/dev/v4l/"):
        return "camera"
    if re.match(r"(rtsps?|https?)://", text, re.IGNORECASE):
        return "stream"
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError as exc:  # a name too long for the file system, say
        raise SourceError(f"{shorten(text)}: {exc.strerror or exc}") from None
    if is_dir:
        return "images"
    if is_file:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return "video"
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return "images"
        raise SourceError(f"{shorten(text)}: not a video ({' '.join(VIDEO_SUFFIXES)}) or image file")
    if glob.has_magic(text):
        return "images"
    raise SourceError(f"{shorten(text)}: no such camera, stream, video file, image file or folder")


def open_source(spec: str, **options) -> Source:
    """The source ``spec`` names, not yet opened; ``options`` go to its class.

    Options by kind: camera ``width height fps fourcc props``; stream ``timeout props``;
    video ``live props``; images none; picamera2 ``camera width height fps preview_size``;
    sample ``frames width height``.
    An option given as ``None`` counts as not given, so one config can feed every kind;
    any other option the kind does not take is a ConfigError.
    """
    kind = source_kind(spec)
    accepted = KINDS[kind].info
    options = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"{spec}: option {', '.join(unknown)} does not apply to {kind} sources "
                          f"(accepted: {', '.join(accepted) or 'none'})")
    target = int(spec) if kind == "camera" and str(spec).strip().isdigit() else str(spec).strip()
    source_class = KINDS.load(kind)
    return source_class(**options) if kind in NO_TARGET else source_class(target, **options)


from .reconnect import Reconnecting, with_reconnect  # noqa: E402  (they need SourceError above)
from .threaded import Threaded  # noqa: E402

__all__ = ["Frame", "Source", "SourceError", "SourceLost", "open_source", "source_kind", "with_reconnect",
           "Reconnecting", "Threaded", "VIDEO_SUFFIXES"]
