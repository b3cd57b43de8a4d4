"""Keep a live source going: reopen it with back-off when it is lost.

A camera unplugged or a stream dropped raises ``SourceLost``; ``Reconnecting`` closes it, logs
``camera lost``, calls ``on_state("lost", detail)``, and retries after 1, 2, 4, 8, 16, then every
30 s until frames flow again, when it logs and calls ``on_state("recovered", detail)``. A camera
missing at start-up is retried the same way, but said as such: ``on_state("never_seen", detail)``
and a log line that it has not delivered a frame since start. With ``max_wait_s`` it gives up
(SourceError) once no frame has come for that long, at start or after a loss; without, it
retries forever, which is right under systemd. Its frames are renumbered so ``index`` keeps
counting across reconnections::

    with with_reconnect(open_source("rtsp://cam/stream"), on_state=publish_status) as source:
        frame = source.read()   # blocks while the camera is away

``close()`` (from any thread) stops it: a ``read()`` waiting to reconnect returns ``None``.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable

from . import BaseSource, Frame, Source, SourceError

log = logging.getLogger(__name__)

BACKOFF = (1, 2, 4, 8, 16, 30)


class Reconnecting(BaseSource):
    """``source`` reopened after each loss, waiting ``backoff`` seconds between attempts (the
    last repeats). ``on_state(state, detail)`` hears ``"lost"`` and ``"recovered"``; ``sleep``
    replaces the wait (tests); ``max_attempts`` failed reopenings, or ``max_wait_s`` seconds without
    a frame, end it with SourceError (``None``: never give up)."""

    live = True
    interruptible = True

    def __init__(self, source: Source, backoff=BACKOFF, on_state: Callable[[str, str], None] | None = None,
                 sleep: Callable[[float], None] | None = None, max_attempts: int | None = None,
                 max_wait_s: float | None = None):
        if not backoff or min(backoff) < 0:
            raise ValueError(f"backoff must be non-negative seconds, got {backoff!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 (or None), got {max_attempts}")
        self.source, self.backoff, self.max_attempts, self.max_wait_s = source, tuple(backoff), max_attempts, max_wait_s
        self.name = source.name
        self._on_state = on_state or (lambda state, detail: None)
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait  # the default wait wakes on close()
        self._lock = threading.Lock()
        self._connected = False
        self._lost_since: float | None = None
        self._attempts = 0
        self._index = 0
        self._seen = False  # a frame has come since start

    @property
    def reconnecting(self) -> bool:
        """True from a loss until frames flow again (also while a camera missing at start is retried)."""
        return self._lost_since is not None

    def open(self) -> None:
        """Start; the first connection happens on the first ``read()``."""
        self._stop.clear()

    def read(self) -> Frame | None:
        with self._lock:
            while not self._stop.is_set():
                try:
                    if not self._connected:
                        if self._lost_since is not None:
                            self._attempts += 1
                        self.source.open()
                        self._connected = True
                    frame = self.source.read()
                except SourceError as exc:  # SourceLost, or an open that failed
                    self._failed(exc)
                    continue
                if frame is None:
                    return None
                if self._lost_since is not None:
                    self._recovered()
                self._seen = True
                self._index += 1
                return dataclasses.replace(frame, index=self._index - 1)
            self.source.close()  # closed while an open or read blocked: the source is released here
            self._connected = False
            return None

    def close(self) -> None:
        """Stop; a ``read()`` blocked in the source's open or read returns None once that returns."""
        self._stop.set()
        if self._lock.acquire(timeout=0.2):  # else read() holds it and closes the source itself
            try:
                self.source.close()
                self._connected = False
            finally:
                self._lock.release()

    def _failed(self, exc: SourceError) -> None:
        self.source.close()
        self._connected = False
        if self._lost_since is None:
            self._lost_since, self._attempts = time.monotonic(), 0
            if self._seen:
                log.warning("camera lost: %s", exc)  # the message names the source
                self._on_state("lost", str(exc))
            else:
                log.warning("%s has not delivered a frame since start (%s); retrying with back-off %s", self.name,
                            exc, "forever (set source.max_wait_s or run --max-wait SECONDS to give up)"
                            if self.max_wait_s is None else f"for up to {self.max_wait_s:g} s")
                self._on_state("never_seen", str(exc))
        elif self.max_attempts is not None and self._attempts >= self.max_attempts:
            raise SourceError(f"{self.name}: gave up after {self._attempts} attempts to reconnect ({exc})") from None
        waited = time.monotonic() - self._lost_since
        if self.max_wait_s is not None and waited >= self.max_wait_s:
            raise SourceError(f"{self.name}: no frame for {waited:.0f} s (max_wait_s {self.max_wait_s:g}); "
                              f"last error: {exc}") from None
        delay = self.backoff[min(self._attempts, len(self.backoff) - 1)]
        if self.max_wait_s is not None:
            delay = min(delay, max(0.0, self.max_wait_s - waited))
        log.info("%s: reconnecting in %g s (attempt %d)", self.name, delay, self._attempts + 1)
        self._sleep(delay)

    def _recovered(self) -> None:
        detail = f"after {self._attempts} attempts, {time.monotonic() - self._lost_since:.1f} s"
        log.info("%s: camera recovered %s", self.name, detail)
        self._on_state("recovered", detail)
        self._lost_since, self._attempts = None, 0


def with_reconnect(source: Source, **options) -> Source:
    """``Reconnecting(source, **options)`` for a live source; a file or image list unchanged."""
    return Reconnecting(source, **options) if source.live else source
