"""Capture on a background thread, so grabbing frame N+1 overlaps inference on frame N.

For a live source the queue keeps the newest ``queue_size`` frames and drops the oldest (a slow
detector sees the present, not a backlog; ``dropped`` counts them); for a file or image list the
thread waits for room, so every frame arrives, in order. An error in the thread is raised by the
next ``read()`` and ends the capture; ``close()`` stops and joins the thread, which closes the
source (a ``Reconnecting`` source waiting to reconnect is woken first).

A ``read()`` waiting for a frame returns None as soon as ``stop`` (a ``threading.Event``) is set,
so SIGTERM ends a run even while the camera is away, and calls ``on_wait(source)`` every 0.1 s
of its wait (the runtime pings systemd's watchdog from there while ``reconnecting`` is true)::

    with Threaded(with_reconnect(open_source(0))) as source:
        while (frame := source.read()) is not None: ...
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from . import BaseSource, Frame, Source, SourceError

log = logging.getLogger(__name__)

_END = object()


class Threaded(BaseSource):
    """``source`` read by a daemon thread into a queue of ``queue_size`` frames."""

    interruptible = True

    def __init__(self, source: Source, queue_size: int = 2, join_timeout: float = 1.0,
                 stop: threading.Event | None = None, on_wait: Callable[["Threaded"], None] | None = None):
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.source, self.name, self.live = source, source.name, source.live
        self.join_timeout = join_timeout
        self.stop_event, self.on_wait = stop, on_wait
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False

    @property
    def reconnecting(self) -> bool:
        """The wrapped source's ``reconnecting`` (False for a source that does not reconnect)."""
        return bool(getattr(self.source, "reconnecting", False))

    def open(self) -> None:
        """Open the source here (so its errors surface here), then start the thread."""
        if self._thread is not None:
            return
        self.source.open()
        self._queue = queue.Queue(self._queue.maxsize)
        self._stop.clear()
        self._ended = False
        self._thread = threading.Thread(target=self._capture, name=f"capture {self.name}", daemon=True)
        self._thread.start()

    def read(self) -> Frame | None:
        if self._thread is None and not self._ended:
            raise SourceError(f"{self.name}: read before open (or after close)")
        while not self._ended:
            if self.stop_event is not None and self.stop_event.is_set():
                return None
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                thread = self._thread
                if thread is None or not thread.is_alive():
                    self._ended = True  # closed while waiting
                elif self.on_wait is not None:
                    self.on_wait(self)
                continue
            if isinstance(item, Frame):
                return item
            self._ended = True
            if isinstance(item, BaseException):
                raise item
        return None

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        self._ended = True
        if thread is None:
            return
        if self.source.interruptible:
            self.source.close()  # wakes a read() waiting to reconnect
        thread.join(self.join_timeout)
        if thread.is_alive():
            log.warning("%s: capture thread still blocked in the source after %g s (a stream open waits up "
                        "to its timeout); it closes the source when that returns", self.name, self.join_timeout)

    def _capture(self) -> None:
        """The thread: the only reader of the source once open, and the one that closes it."""
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                self._put(frame)
            self._put(_END)
        except BaseException as exc:  # handed to the reader, raised by its next read()
            self._put(exc)
        finally:
            self.source.close()

    def _put(self, item) -> None:
        while not self._stop.is_set():
            if self.live and isinstance(item, Frame) and self._queue.full():
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
