"""JSON Lines sink: one event per line, written straight to the OS, the file rotated by size.

Before a line would take the file past ``max_bytes`` the file is renamed
``events.jsonl`` -> ``events.jsonl.1`` -> ... -> ``events.jsonl.<backups>`` (the
oldest dropped) and a new one started, so rotation falls between whole lines.
A torn last line left by a power cut is cut off when the file is opened again:
every line of every file parses.

A path that cannot take events (a directory, a read-only folder, a parent that
cannot be made) is a one-line ``ConfigError`` at start. The file itself is only
created by the first event, so a run that fails before any leaves no empty file.
A full disk never ends the run: ``write`` then drops the event and counts it in
``lost``, logs one warning naming the file when writing starts to fail and one
line when it works again (each event tries again; the lost ones are not
retried), and cuts off any part of a line it could not finish.

Example::

    with JsonlSink(JsonlConfig(path="/var/lib/maskwatch/events.jsonl", max_bytes=5_000_000)) as sink:
        sink.publish(status_event("camera_lost", device_id="pole-12"))
"""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError
from .sink import Sink

log = logging.getLogger(__name__)


class JsonlConfig(BaseModel):
    """Where the JSON Lines file goes and how it rotates."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="jsonl")

    path: Path = Field(..., title="path", description="the JSON Lines file; its folder is created when missing")
    max_bytes: int = Field(10_000_000, ge=1, title="maximum size",
                           description="rotate before a line would make the file larger than this (bytes)")
    backups: int = Field(5, ge=0, title="backups",
                         description="rotated files kept (path.1 newest ... path.N oldest); 0 keeps none")
    fsync: bool = Field(False, title="fsync",
                        description="fsync after every line: survives power cuts, wears SD cards faster")


class JsonlSink(Sink):
    """Appends events to ``config.path`` as JSON Lines, rotated by size; ``lost`` counts the events a full
    or failing disk did not take."""

    name = "jsonl"

    def __init__(self, config: JsonlConfig, *, device_id: str | None = None):  # device_id: every sink's signature
        self.config = config
        self.path = Path(config.path)
        self._lock = threading.Lock()
        self._file = None
        self._size = 0                 #: bytes of whole lines in the current file
        self.lost = self.written = 0
        self._failing = False
        self._existed = self.path.exists()
        try:
            if self.path.parent.exists() and not self.path.parent.is_dir():   # mkdir would say "File exists"
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            # Rotation renames the file: only a regular one (never /dev/full or a FIFO).
            self._regular = not self._existed or stat.S_ISREG(self.path.stat().st_mode)
            if self._existed:
                self._open()
            else:                      # can it be made? it is, for good, with the first event
                open(self.path, "xb").close()
                self.path.unlink()
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write the event log there ({exc.strerror or exc})") from None

    def _open(self) -> None:
        if self._regular:
            cut_torn_tail(self.path)
        self._file = open(self.path, "ab", buffering=0)
        self._size = self._file.tell()

    def write(self, event: dict) -> None:
        line = (json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            try:
                self._append(line)
            except OSError as exc:
                self.lost += 1
                self._cut_partial_line()
                if not self._failing:
                    log.warning("%s: cannot write events (%s); counting the ones lost and trying again with "
                                "each event", self.path, exc.strerror or exc)
                self._failing = True
                return
            if self._failing:
                log.info("%s: writing events again (%d lost while it could not)", self.path, self.lost)
                self._failing = False

    def _append(self, line: bytes) -> None:
        if self._file is None:
            self._open()
        if self._regular and self._size and self._size + len(line) > self.config.max_bytes:
            self._rotate()
            self._open()
        view = memoryview(line)
        while view:
            view = view[self._file.write(view):]
        if self.config.fsync:
            os.fsync(self._file.fileno())
        self._size += len(line)
        self.written += 1

    def _cut_partial_line(self) -> None:
        """After a failed write, drop what part of the line got in, so every line still parses; if even that
        fails, the file is opened again (and cut) for the next event."""
        if self._file is None or not self._regular:
            return
        try:
            os.ftruncate(self._file.fileno(), self._size)
        except OSError:
            self._file.close()
            self._file = None

    def _rotate(self) -> None:
        self._file.close()
        self._file = None
        backups = self.config.backups
        for n in range(backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if backups:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if not self._existed and not self.written and self._regular:
                try:                   # made by an event that did not get in: leave no empty file
                    if self.path.stat().st_size == 0:
                        self.path.unlink()
                except OSError:
                    pass
            if self.lost:
                log.warning("%s: %d events could not be written", self.path, self.lost)


def cut_torn_tail(path: Path, chunk: int = 4096) -> int:
    """Truncate ``path`` after its last newline (a line torn by a crash); returns the bytes cut."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            block = f.read(pos - start)
            if start + len(block) == end and block.endswith(b"\n"):
                return 0
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            pos = start
        else:
            keep = 0
        f.truncate(keep)
    if end - keep:
        log.warning("%s: cut a torn last line (%d bytes)", path, end - keep)
    return end - keep
