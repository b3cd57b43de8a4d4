"""Reading what a damaged spool database still holds (used by :class:`~maskwatch.edge.events.spool.Spool` on open).

A record whose JSON does not parse is unreadable; a page SQLite reports as damaged is stepped
over one sequence number at a time; a damaged file is renamed aside so a fresh one can start.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import suppress
from pathlib import Path

#: consecutive unreadable sequence numbers stepped over when reading a damaged database
MAX_PROBES = 100_000


def decode(text: bytes) -> dict | None:
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("type"), str) else None


def damaged(exc: sqlite3.Error) -> bool:
    """True for SQLITE_CORRUPT and SQLITE_NOTADB (a plain DatabaseError), not for I/O, full-disk or lock errors."""
    return type(exc) is sqlite3.DatabaseError


def scan(db: sqlite3.Connection) -> tuple[list[tuple[int, bytes]], sqlite3.Error | None]:
    """Every readable (seq, JSON) row in seq order, stepping over damaged pages; and the first damage met."""
    rows: list[tuple[int, bytes]] = []
    problem, failures, after = None, 0, -1
    with suppress(sqlite3.DatabaseError):  # damaged: the scan below starts at 0 and meets it
        after = (db.execute("SELECT min(seq) FROM events").fetchone()[0] or 0) - 1
    while failures <= MAX_PROBES:
        start = after
        try:
            for row in db.execute("SELECT seq, event FROM events WHERE seq > ? ORDER BY seq", (after,)):
                rows.append(row)
                after = row[0]
            break
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
                raise
            problem = problem or exc
            if after == start:  # not even the row after ``after`` reads: step over one sequence number
                after, failures = after + 1, failures + 1
            else:  # read some, then met damage: seek past the last good row afresh
                failures = 0
    return rows, problem


def set_aside(folder: Path, name: str) -> Path:
    """Rename database ``name`` and its WAL in ``folder`` to ``<name>.corrupt-<UTC time>``; returns that path."""
    aside = folder / f"{name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    for suffix in ("", "-wal"):
        if (folder / (name + suffix)).exists():
            os.replace(folder / (name + suffix), f"{aside}{suffix}")
    (folder / (name + "-shm")).unlink(missing_ok=True)
    return aside
