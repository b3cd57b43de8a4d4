"""A bounded on-disk spool: events wait here, in order, until the broker has acknowledged them.

The folder holds append-only segment files of JSON lines, one record per line::

    {"seq":41,"event":{"type":"new","track_id":7,...}}

The segment being written is ``<first seq>.open``; when it reaches
``segment_bytes`` it is fsynced and renamed ``<first seq>.seg`` (sealed), and
the folder is fsynced. Every append is written with one ``write`` and (by
default) fsynced, so a process killed at any point, even by a power cut,
keeps every record before the one being written. A torn or corrupt line in
the open segment is cut off when the spool is opened again (logged), so no
corrupt record is ever handed out. ``state.json`` (written to a temp file,
fsynced, renamed) keeps the first wanted sequence number and the ``dropped``
count; it is saved at most once a second, before a segment is deleted, and on
``flush``/``close``: a crash can only make acknowledged records come back
(at-least-once), never lose unacknowledged ones.

Bounds: past ``max_bytes`` (of pending records) or ``max_events`` the OLDEST
records are dropped, counted in ``dropped`` and logged. Pending records are
also held in memory (at most ``max_bytes``), so ``peek`` never reads the disk.
Disk use is at most about ``max_bytes`` plus two segments. One process holds
a spool folder at a time (an flock on ``lock``).

Delivery: ``peek(after, limit)`` gives the oldest pending records, ``ack(seq)``
removes every record up to ``seq`` once the broker confirmed them.

Example::

    with Spool("/var/lib/maskwatch/spool", max_bytes=5_000_000) as spool:
        spool.append(event)
        for seq, event in spool.peek(limit=20):
            ...  # publish with QoS 1, wait for PUBACK
        spool.ack(seq)
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

from ..errors import MaskwatchError

log = logging.getLogger(__name__)

STATE = "state.json"
OPEN, SEALED = ".open", ".seg"
#: seconds between state saves driven by acks and drops (close and segment deletion always save)
SAVE_EVERY_S = 1.0


class SpoolError(MaskwatchError, OSError):
    """The spool folder cannot be used: not writable, or held by another process."""


class Record(NamedTuple):
    seq: int
    event: dict


class _Segment:
    __slots__ = ("first", "last", "path", "size")

    def __init__(self, first: int, path: Path, last: int | None = None, size: int = 0):
        self.first, self.path, self.last, self.size = first, path, first - 1 if last is None else last, size


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse(line: bytes) -> Record | None:
    """A record from one line (without its newline), or None when it is not one."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or set(data) != {"seq", "event"}:
        return None
    seq, event = data["seq"], data["event"]
    if type(seq) is not int or seq < 0 or not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return Record(seq, event)


class Spool:
    """Events kept on disk in ``folder`` until acknowledged; see the module docstring."""

    def __init__(self, folder: str | Path, *, max_bytes: int = 10_000_000, max_events: int | None = None,
                 segment_bytes: int | None = None, fsync: bool = True):
        if max_bytes < 1 or (max_events is not None and max_events < 1):
            raise ValueError(f"spool bounds must be positive (max_bytes={max_bytes}, max_events={max_events})")
        self.folder = Path(folder)
        self.max_bytes, self.max_events, self.fsync = max_bytes, max_events, fsync
        self.segment_bytes = segment_bytes or max(64 * 1024, max_bytes // 16)
        self.dropped = 0  #: records dropped, oldest first, because a bound was reached (persisted)
        self.closed = False
        self._lock = threading.RLock()
        self._pending: deque[tuple[int, int, dict]] = deque()  # (seq, line bytes, event)
        self._bytes = 0
        self._sealed: list[_Segment] = []
        self._active: _Segment | None = None
        self._file = None
        self._saved_at = 0.0
        self._dirty = False
        self._warned = False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lockfile = open(self.folder / "lock", "a")
        except OSError as exc:
            raise SpoolError(f"spool {self.folder}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise SpoolError(f"spool {self.folder} is in use by another process") from None
        try:
            self._load()
        except OSError as exc:
            self._lockfile.close()
            raise SpoolError(f"spool {self.folder}: {exc.strerror or exc}") from None

    # --- opening --------------------------------------------------------------------------------------

    def _load(self) -> None:
        state = self._read_state()
        self._first = self._next = int(state.get("first", 0))
        self.dropped = int(state.get("dropped", 0))
        self._next = max(self._next, int(state.get("next", 0)))
        (self.folder / (STATE + ".tmp")).unlink(missing_ok=True)
        files = []
        for path in self.folder.iterdir():
            if path.suffix in (OPEN, SEALED) and path.stem.isdigit():
                files.append((int(path.stem), path.suffix == SEALED, path))
        files.sort()
        last_seq = self._first - 1
        for n, (first, sealed, path) in enumerate(files):
            segment = _Segment(first, path)
            for record, size in self._read_segment(path, cut=not sealed):
                segment.last, segment.size = max(segment.last, record.seq), segment.size + size
                if record.seq < self._first or record.seq <= last_seq:
                    continue  # acknowledged or dropped before; or out of order (never written so)
                self._pending.append((record.seq, size, record.event))
                self._bytes += size
                last_seq = record.seq
            segment.size = path.stat().st_size
            if not sealed and n == len(files) - 1:
                self._active = segment
            elif not sealed:
                self._seal_file(segment)
            else:
                self._sealed.append(segment)
        self._next = max(self._next, last_seq + 1, *(s.last + 1 for s in self._sealed))
        if self._active is not None:
            self._next = max(self._next, self._active.last + 1)
            self._file = open(self._active.path, "ab", buffering=0)
        with self._lock:
            self._enforce_bounds(0)
            self._collect(force_save=True)
        if self._pending:
            log.info("spool %s: %d events waiting (seq %d..%d), %d dropped so far", self.folder, len(self._pending),
                     self._pending[0][0], self._pending[-1][0], self.dropped)

    def _read_state(self) -> dict:
        path = self.folder / STATE
        try:
            state = json.loads(path.read_bytes())
            if isinstance(state, dict) and all(type(state.get(k, 0)) is int for k in ("first", "next", "dropped")):
                return state
            log.warning("spool %s: %s is not a spool state; starting from the segments", self.folder, path.name)
        except FileNotFoundError:
            pass
        except (ValueError, UnicodeDecodeError):
            log.warning("spool %s: %s is corrupt; starting from the segments", self.folder, path.name)
        return {}

    def _read_segment(self, path: Path, cut: bool):
        """(record, line bytes) for each good line; in an open segment the first bad line and all after it are cut."""
        data = path.read_bytes()
        pos, good_end = 0, 0
        while pos < len(data):
            newline = data.find(b"\n", pos)
            line = data[pos:] if newline < 0 else data[pos:newline]
            record = _parse(line) if newline >= 0 else None
            if record is None:
                if cut:
                    with open(path, "rb+") as f:
                        f.truncate(good_end)
                        os.fsync(f.fileno())
                    log.warning("spool %s: cut a torn or corrupt record at byte %d of %s (%d bytes dropped)",
                                self.folder, good_end, path.name, len(data) - good_end)
                    return
                log.warning("spool %s: skipped a corrupt record at byte %d of sealed %s", self.folder, pos, path.name)
            else:
                yield record, newline + 1 - pos
                good_end = newline + 1
            if newline < 0:
                break
            pos = newline + 1

    # --- writing --------------------------------------------------------------------------------------

    def append(self, event: dict) -> int:
        """Write ``event`` durably (one line, fsynced) and return its sequence number."""
        with self._lock:
            if self.closed:
                raise SpoolError(f"spool {self.folder} is closed")
            seq = self._next
            line = (json.dumps({"seq": seq, "event": event}, separators=(",", ":"), allow_nan=False) + "\n").encode()
            if self._active is None:
                try:
                    self._file = open(self.folder / f"{seq:012d}{OPEN}", "ab", buffering=0)
                    if self.fsync:
                        _fsync_dir(self.folder)
                except OSError as exc:
                    raise SpoolError(f"spool {self.folder}: cannot write: {exc.strerror or exc}") from None
                self._active = _Segment(seq, Path(self._file.name))
            try:
                view = memoryview(line)
                while view:
                    view = view[self._file.write(view):]
                if self.fsync:
                    os.fsync(self._file.fileno())
            except OSError as exc:
                raise SpoolError(f"spool {self.folder}: cannot write: {exc.strerror or exc}") from None
            self._next = seq + 1
            self._active.last, self._active.size = seq, self._active.size + len(line)
            self._enforce_bounds(len(line))
            self._pending.append((seq, len(line), event))
            self._bytes += len(line)
            if self._active.size >= self.segment_bytes:
                self._seal_active()
            self._collect()
            return seq

    def _enforce_bounds(self, incoming: int) -> None:
        """Drop the oldest pending records until ``incoming`` more bytes (one more record if > 0) fit."""
        extra = 1 if incoming else 0
        dropped = 0
        while self._pending and (self._bytes + incoming > self.max_bytes or
                                 (self.max_events is not None and len(self._pending) + extra > self.max_events)):
            seq, size, _ = self._pending.popleft()
            self._bytes -= size
            self._first = seq + 1
            dropped += 1
        if dropped:
            self.dropped += dropped
            self._dirty = True
            (log.debug if self._warned else log.warning)(
                "spool %s full (%d events, %d bytes): dropped the %d oldest; %d dropped in all", self.folder,
                len(self._pending), self._bytes, dropped, self.dropped)
            self._warned = True

    def _seal_active(self) -> None:
        segment, self._active = self._active, None
        self._file.close()
        self._file = None
        self._seal_file(segment)

    def _seal_file(self, segment: _Segment) -> None:
        with open(segment.path, "rb") as f:
            os.fsync(f.fileno())
        sealed = segment.path.with_suffix(SEALED)
        os.replace(segment.path, sealed)
        _fsync_dir(self.folder)
        segment.path = sealed
        self._sealed.append(segment)
        self._sealed.sort(key=lambda s: s.first)

    # --- delivering -----------------------------------------------------------------------------------

    def peek(self, after: int | None = None, limit: int = 100) -> list[Record]:
        """Up to ``limit`` pending records with seq > ``after`` (all pending when None), oldest first."""
        with self._lock:
            out = []
            for seq, _, event in self._pending:
                if after is not None and seq <= after:
                    continue
                if len(out) >= limit:
                    break
                out.append(Record(seq, event))
            return out

    def ack(self, seq: int) -> int:
        """Remove every pending record up to and including ``seq``: the broker has them. Returns how many."""
        with self._lock:
            seq = min(seq, self._next - 1)
            removed = 0
            while self._pending and self._pending[0][0] <= seq:
                _, size, _ = self._pending.popleft()
                self._bytes -= size
                removed += 1
            if seq >= self._first:
                self._first = seq + 1
                self._dirty = True
                self._warned = False
            self._collect()
            return removed

    def _collect(self, force_save: bool = False) -> None:
        """Save the state when due, and delete sealed segments whose records are all acknowledged or dropped."""
        done = [s for s in self._sealed if s.last < self._first]
        if force_save or done or (self._dirty and time.monotonic() - self._saved_at >= SAVE_EVERY_S):
            self._save_state()
        for segment in done:
            segment.path.unlink(missing_ok=True)
            self._sealed.remove(segment)

    def _save_state(self) -> None:
        tmp = self.folder / (STATE + ".tmp")
        data = json.dumps({"first": self._first, "next": self._next, "dropped": self.dropped}).encode()
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / STATE)
        _fsync_dir(self.folder)
        self._saved_at, self._dirty = time.monotonic(), False

    # --- state ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Bytes of the pending records' lines."""
        return self._bytes

    @property
    def next_seq(self) -> int:
        return self._next

    def flush(self) -> None:
        """Everything written so far is on disk: the open segment and the state fsynced."""
        with self._lock:
            if self._file is not None:
                os.fsync(self._file.fileno())
            self._save_state()

    def close(self) -> None:
        """Flush and release the folder; safe to call twice."""
        with self._lock:
            if self.closed:
                return
            try:
                self.flush()
            finally:
                self.closed = True
                if self._file is not None:
                    self._file.close()
                self._lockfile.close()
            if self.dropped:
                log.warning("spool %s closed with %d events waiting; %d dropped in all because it was full",
                            self.folder, len(self._pending), self.dropped)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
