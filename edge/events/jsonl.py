"""JSON Lines sink: one event per line, written straight to the OS, the file rotated by size.

Before a line would take the file past ``max_bytes`` the file is renamed
``events.jsonl`` -> ``events.jsonl.1`` -> ... -> ``events.jsonl.<backups>`` (the
oldest dropped) and a new one started, so rotation falls between whole lines.
A torn last line left by a power cut is cut off when the file is opened again:
every line of every file parses.

Example::

    with JsonlSink(JsonlConfig(path="/var/lib/maskwatch/events.jsonl", max_bytes=5_000_000)) as sink:
        sink.publish(status_event("camera_lost", device_id="pole-12"))
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .sink import Sink

log = logging.getLogger(__name__)


class JsonlConfig(BaseModel):
    """Where the JSON Lines file goes and how it rotates."""

    model_config = ConfigDict(extra="forbid", title="jsonl")

    path: Path = Field(..., title="path", description="the JSON Lines file; its folder is created when missing")
    max_bytes: int = Field(10_000_000, ge=1, title="maximum size",
                           description="rotate before a line would make the file larger than this (bytes)")
    backups: int = Field(5, ge=0, title="backups",
                         description="rotated files kept (path.1 newest ... path.N oldest); 0 keeps none")
    fsync: bool = Field(False, title="fsync",
                        description="fsync after every line: survives power cuts, wears SD cards faster")


class JsonlSink(Sink):
    """Appends events to ``config.path`` as JSON Lines, rotated by size."""

    name = "jsonl"

    def __init__(self, config: JsonlConfig):
        self.config = config
        self.path = Path(config.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        cut_torn_tail(self.path)
        self._file = open(self.path, "ab", buffering=0)
        self._size = self._file.tell()

    def write(self, event: dict) -> None:
        line = (json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            if self._size and self._size + len(line) > self.config.max_bytes:
                self._rotate()
            view = memoryview(line)
            while view:
                view = view[self._file.write(view):]
            if self.config.fsync:
                os.fsync(self._file.fileno())
            self._size += len(line)

    def _rotate(self) -> None:
        self._file.close()
        backups = self.config.backups
        for n in range(backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if backups:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._file = open(self.path, "ab", buffering=0)
        self._size = 0

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


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
