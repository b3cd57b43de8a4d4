"""A bounded on-disk spool: events wait here, in order, until the broker has acknowledged them.

Storage is one SQLite database in WAL mode (the standard library's ``sqlite3``), ``<folder>/spool.db``::

    CREATE TABLE events (seq INTEGER PRIMARY KEY, event TEXT NOT NULL)  -- one row per event, as JSON
    CREATE TABLE meta (id INTEGER PRIMARY KEY, next INTEGER, dropped INTEGER, corrupt INTEGER)  -- one row

Promises:

* Bounded: past ``max_bytes`` (of event JSON) or ``max_events`` the OLDEST events
  are dropped, counted in ``dropped`` (kept across restarts) and logged.
* Ordered: ``peek(after, limit)`` gives the oldest pending events, seq increasing;
  ``ack(seq)`` removes every event up to ``seq`` once the broker confirmed them.
  Delivery is at-least-once: after a crash an acknowledged event may come back.
* Durable: each append is one transaction. ``durability="full"`` (``PRAGMA
  synchronous=FULL``, the default) fsyncs the WAL at every commit: an event that
  ``append`` returned survives SIGKILL and a power cut. ``"normal"``
  (``synchronous=NORMAL``) syncs at checkpoints and ``flush`` only: SIGKILL loses
  nothing, a power cut may lose the last appends. Neither is ever corrupted by a
  crash: a torn WAL frame fails its checksum and is ignored.
* Damage (reading it: ``spool_recovery``): an event whose JSON does not parse is skipped, deleted, counted in
  ``corrupt`` (kept across restarts) and logged. A file that is not a database,
  or one with damaged pages, is renamed ``spool.db.corrupt-<UTC time>`` (one log
  line names it), the events still readable are copied to a fresh database (the
  others counted in ``corrupt``) and the spool starts: it never refuses to.
* Full disk: ``append`` never raises on a write error (ENOSPC, SQLITE_FULL, I/O), and a disk
  too full to create the database at start does not stop the spool: it starts in memory.
  The event waits in memory (at most ``OVERFLOW``, past that the oldest dropped
  and counted), with one warning when writes start failing and one info line
  when they work again; every append, ack, ``flush`` and ``close`` retries,
  oldest first. ``peek`` gives the events on disk, then those in memory.
* Upgrade: a folder of maskwatch 0.1's segmented log (see ``spool_legacy``) is
  imported on open, in order, with its ``dropped`` count; then its files are removed.

One process holds a folder (an flock on ``lock``). Within it one connection serves
every thread behind a lock: the frame thread appends, the MQTT sender peeks and acks.

Example::

    with Spool("/var/lib/maskwatch/spool", max_bytes=5_000_000) as spool:
        spool.append(event)
        for seq, event in spool.peek(limit=20):
            ...  # publish with QoS 1, wait for PUBACK
        spool.ack(seq)
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import sqlite3
import threading
from collections import deque
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal, NamedTuple

from ..errors import MaskwatchError
from .spool_legacy import read_old_spool
from .spool_recovery import damaged, decode, scan, set_aside

log = logging.getLogger(__name__)

DB = "spool.db"
#: events kept in memory while the disk refuses writes
OVERFLOW = 1000
Durability = Literal["full", "normal"]
SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
SCHEMA = ("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, event TEXT NOT NULL)",
          "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY, next INTEGER, dropped INTEGER, corrupt INTEGER)")
SAVE_META = "INSERT OR REPLACE INTO meta VALUES (0, ?, ?, ?)"
INSERT = "INSERT INTO events VALUES (?, ?)"


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC, or SQLite's SQLITE_FULL ("database or disk is full")."""
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            or getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(exc))


class SpoolError(MaskwatchError, OSError):
    """The spool folder cannot be used: not writable, or held by another process."""


class Record(NamedTuple):
    seq: int
    event: dict


@contextmanager
def _transaction(db: sqlite3.Connection):
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


class Spool:
    """Events kept on disk in ``folder`` until acknowledged; see the module docstring."""

    def __init__(self, folder: str | Path, *, max_bytes: int = 10_000_000, max_events: int | None = None,
                 durability: Durability = "full"):
        if max_bytes < 1 or (max_events is not None and max_events < 1):
            raise ValueError(f"spool bounds must be positive (max_bytes={max_bytes}, max_events={max_events})")
        if durability not in SYNCHRONOUS:
            raise ValueError(f"spool durability must be one of {', '.join(SYNCHRONOUS)}, not {durability!r}")
        self.folder = Path(folder)
        self.max_bytes, self.max_events, self.durability = max_bytes, max_events, durability
        self.dropped = 0  #: events dropped, oldest first, because a bound was reached (persisted)
        self.corrupt = 0  #: events lost to a damaged file or record (persisted)
        self.closed = False
        self._lock = threading.Lock()
        self._count = self._bytes = 0  # rows on disk with seq >= _first, and their JSON bytes
        self._first = self._deleted_below = self._next = 0  # rows below _first are acked or dropped
        self._overflow: deque[tuple[int, str, dict]] = deque()  # (seq, JSON, event) the disk refused
        self._overflow_bytes = 0
        self._saved = (0, 0)  # (dropped, corrupt) as on disk
        self._failing = self._warned = False
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
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._open()
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            if self._db is not None:
                self._db.close()
                self._db = None
            if not _disk_full(exc):
                self._lockfile.close()
                raise SpoolError(f"spool {self.folder}: {getattr(exc, 'strerror', None) or exc}") from None
            # a full disk at the first start: run with events in memory and open the file when it can be
            log.warning("spool %s cannot be created (%s): up to %d events wait in memory until it can",
                        self.folder, exc, OVERFLOW)
            self._failing = True
        with self._lock:
            self._make_room(0)
            self._write()
        if len(self):
            log.info("spool %s: %d events waiting, %d dropped so far", self.folder, len(self), self.dropped)

    # --- opening --------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.folder / DB, isolation_level=None, check_same_thread=False)
        try:
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                log.warning("spool %s: this file system refuses SQLite's WAL mode", self.folder)
            db.execute(f"PRAGMA synchronous={SYNCHRONOUS[self.durability]}")
            for statement in SCHEMA:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        db.text_factory = bytes  # event JSON as bytes: a corrupt byte is a bad record, not a decode error
        return db

    def _open(self) -> sqlite3.Connection:
        """Connect and count what waits; a damaged database is set aside, keeping every row still readable."""
        db, meta, rows, problem = None, None, [], None
        try:
            db = self._connect()
            meta = db.execute("SELECT next, dropped, corrupt FROM meta").fetchone()
            rows, problem = scan(db)
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
                if db is not None:
                    db.close()
                raise
            problem = exc
        self._next, self.dropped, self.corrupt = (int(v or 0) for v in meta or (0, 0, 0))
        self._saved = (self.dropped, self.corrupt)
        good = [(seq, text) for seq, text in rows if decode(text) is not None]
        if problem is not None:
            if db is not None:
                db.close()
            aside = set_aside(self.folder, DB)
            db = self._connect()
            with _transaction(db):
                db.executemany(INSERT, good)
            lost = max(self._next, rows[-1][0] + 1) - rows[0][0] - len(good) if rows else 0
            self.corrupt += lost
            log.warning("spool %s: %s is damaged (%s): moved it aside as %s; %s", self.folder, DB, problem,
                        aside.name, f"kept the {len(good)} events still readable, {lost} lost" if rows else
                        "nothing in it was readable, starting empty")
        elif len(good) < len(rows):
            bad = {seq for seq, _ in rows} - {seq for seq, _ in good}
            with _transaction(db):
                db.executemany("DELETE FROM events WHERE seq = ?", [(seq,) for seq in bad])
            self.corrupt += len(bad)
            log.warning("spool %s: skipped %d events whose JSON is corrupt (%d corrupt in all)", self.folder,
                        len(bad), self.corrupt)
        self._count, self._bytes = len(good), sum(len(text) for _, text in good)
        self._next = max(self._next, good[-1][0] + 1 if good else 0)
        self._first = self._deleted_below = good[0][0] if good else self._next
        return db

    def _migrate(self) -> None:
        """Import a spool of the previous release (segment files) found in the folder, then delete its files."""
        old = read_old_spool(self.folder)
        if old is None:
            return
        offset = max(0, self._next - old.records[0][0]) if old.records else 0  # never reuse a seq
        rows = [(seq + offset, json.dumps(event, separators=(",", ":"))) for seq, event in old.records]
        self._next = max(self._next, old.next_seq + offset)
        self.dropped, self.corrupt = self.dropped + old.dropped, self.corrupt + old.corrupt
        with _transaction(self._db) as db:
            db.executemany(INSERT, rows)
            db.execute(SAVE_META, (self._next, self.dropped, self.corrupt))
        self._saved = (self.dropped, self.corrupt)
        self._count, self._bytes = self._count + len(rows), self._bytes + sum(len(text) for _, text in rows)
        for path in old.files:
            path.unlink(missing_ok=True)
        log.info("spool %s: migrated %d events from the previous release's segment files (%d unreadable records "
                 "skipped, %d dropped before)", self.folder, len(rows), old.corrupt, old.dropped)

    # --- writing --------------------------------------------------------------------------------------

    def append(self, event: dict) -> int:
        """Store ``event`` and return its sequence number; a disk that refuses keeps it in memory (no raise)."""
        text = json.dumps(event, separators=(",", ":"), allow_nan=False)
        with self._lock:
            if self.closed:
                raise SpoolError(f"spool {self.folder} is closed")
            self._make_room(len(text))
            seq, self._next = self._next, self._next + 1
            self._overflow.append((seq, text, event))
            self._overflow_bytes += len(text)
            if not self._write() and len(self._overflow) > OVERFLOW:
                self._overflow_bytes -= len(self._overflow.popleft()[1])
                self.dropped += 1  # the disk's warning said memory keeps OVERFLOW; close() logs the total
            return seq

    def _make_room(self, size: int) -> None:
        """Drop the oldest pending events until one more of ``size`` bytes fits (with 0: until within bounds)."""
        extra, dropped = (1 if size else 0), 0
        while (self._count or self._overflow) and (
                self.pending_bytes + size > self.max_bytes or
                (self.max_events is not None and len(self) + extra > self.max_events)):
            row = self._count and self._db.execute(
                "SELECT seq, length(event) FROM events WHERE seq >= ? ORDER BY seq LIMIT 1", (self._first,)).fetchone()
            if row:
                self._first, self._count, self._bytes = row[0] + 1, self._count - 1, self._bytes - row[1]
            else:
                self._count = self._bytes = 0  # the disk has none left: the oldest are in memory
                if not self._overflow:
                    break
                self._overflow_bytes -= len(self._overflow.popleft()[1])
            dropped += 1
        if dropped:
            self.dropped += dropped
            (log.debug if self._warned else log.warning)(
                "spool %s full (%d events, %d bytes): dropped the %d oldest; %d dropped in all", self.folder,
                len(self), self.pending_bytes, dropped, self.dropped)
            self._warned = True

    def _write(self) -> bool:
        """Put the events in memory, the deletions and changed counters on disk in one transaction.

        False when the disk refuses (full, I/O error): all of it stays in memory for the next try.
        """
        if self._db is None and not self._open_late():
            return False
        delete, counters = self._first > self._deleted_below, (self.dropped, self.corrupt)
        if not self._overflow and not delete and counters == self._saved:
            return True
        try:
            with _transaction(self._db) as db:
                if delete:
                    db.execute("DELETE FROM events WHERE seq < ?", (self._first,))
                db.executemany(INSERT, [(seq, text) for seq, text, _ in self._overflow])
                if delete or counters != self._saved:
                    db.execute(SAVE_META, (self._next, *counters))
        except (OSError, sqlite3.DatabaseError) as exc:
            if not self._failing:
                log.warning("spool %s cannot write (%s): up to %d events wait in memory until it can",
                            self.folder, exc, OVERFLOW)
                self._failing = True
            return False
        if self._failing:
            log.info("spool %s writes again: %d events moved from memory to disk", self.folder, len(self._overflow))
            self._failing = False
        self._count, self._bytes = self._count + len(self._overflow), self._bytes + self._overflow_bytes
        self._overflow.clear()
        self._overflow_bytes, self._deleted_below, self._saved = 0, self._first, counters
        return True

    def _open_late(self) -> bool:
        """Open the database that a full disk kept from being made at start; the events in memory keep
        their order, after any the file already holds. False while the disk still refuses."""
        waiting, first, counted = list(self._overflow), self._first, (self.dropped, self.corrupt)
        try:
            db = self._open()
        except (OSError, sqlite3.Error):
            self.dropped, self.corrupt = counted
            return False
        self._db = db
        self.dropped, self.corrupt = self.dropped + counted[0], self.corrupt + counted[1]
        self._migrate()
        if self._count:  # the file holds events already: those in memory follow them
            self._overflow = deque((self._next + i, text, event) for i, (_, text, event) in enumerate(waiting))
            self._next += len(waiting)
        else:
            self._next = max(self._next, waiting[-1][0] + 1 if waiting else first)
            self._first = self._deleted_below = max(first, self._first) if not waiting else waiting[0][0]
        return True

    # --- delivering -----------------------------------------------------------------------------------

    def peek(self, after: int | None = None, limit: int = 100) -> list[Record]:
        """Up to ``limit`` pending records with seq > ``after`` (all pending when None), oldest first."""
        with self._lock:
            if self.closed:
                return []
            after, limit = max(self._first - 1, -1 if after is None else after), max(limit, 0)
            out = [] if self._db is None else [Record(seq, json.loads(text)) for seq, text in self._db.execute(
                "SELECT seq, event FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))]
            out += [Record(seq, event) for seq, _, event in self._overflow if seq > after][:limit - len(out)]
            return out

    def ack(self, seq: int) -> int:
        """Remove every pending record up to and including ``seq``: the broker has them. Returns how many."""
        with self._lock:
            seq = min(seq, self._next - 1)
            if self.closed or seq < self._first:
                return 0
            removed, size = (0, 0) if self._db is None else self._db.execute(
                "SELECT count(*), coalesce(sum(length(event)), 0) FROM events WHERE seq BETWEEN ? AND ?",
                (self._first, seq)).fetchone()
            self._count, self._bytes = self._count - removed, self._bytes - size
            while self._overflow and self._overflow[0][0] <= seq:
                self._overflow_bytes -= len(self._overflow.popleft()[1])
                removed += 1
            self._first, self._warned = seq + 1, False
            self._write()
            return removed

    # --- state ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count + len(self._overflow)

    @property
    def pending_bytes(self) -> int:
        """Bytes of the pending events' JSON."""
        return self._bytes + self._overflow_bytes

    @property
    def next_seq(self) -> int:
        return self._next

    def flush(self) -> None:
        """Write what waits in memory, and checkpoint: with ``durability="normal"`` too, all is then on disk."""
        with self._lock:
            if not self.closed and self._write():
                with suppress(sqlite3.OperationalError):  # a failing disk: _write has said so
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        """Write what waits in memory and release the folder; safe to call twice."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._write()
            finally:
                if self._overflow:
                    log.warning("spool %s closed with %d events the disk refused: they are lost", self.folder,
                                len(self._overflow))
                if self._db is not None:
                    self._db.close()
                self._lockfile.close()
        if self.dropped:
            log.warning("spool %s closed with %d events waiting; %d dropped in all because it was full",
                        self.folder, len(self), self.dropped)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
