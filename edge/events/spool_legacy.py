"""Reads (only reads) a spool folder written by maskwatch 0.1's segmented log, so ``Spool`` can import it.

That format: segment files ``<first seq, 12 digits>.open`` (being written) and
``.seg`` (sealed), each a run of JSON lines ``{"seq":41,"event":{...}}\\n``, and
``state.json`` = ``{"first": <lowest wanted seq>, "next": <next seq>, "dropped": <count>}``.
A line that does not parse (torn by a power cut, or a corrupt byte) is skipped and
counted; the lines after it are kept.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

STATE = "state.json"
SUFFIXES = (".open", ".seg")


class OldSpool(NamedTuple):
    records: list[tuple[int, dict]]  #: (seq, event) still wanted, in seq order
    next_seq: int
    dropped: int
    corrupt: int  #: lines that could not be parsed, skipped
    files: list[Path]  #: what to delete once the records are safe elsewhere


def _record(line: bytes) -> tuple[int, dict] | None:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or set(data) != {"seq", "event"}:
        return None
    seq, event = data["seq"], data["event"]
    if type(seq) is not int or seq < 0 or not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return seq, event


def read_old_spool(folder: Path) -> OldSpool | None:
    """The old spool in ``folder``, or None when the folder holds none of its files."""
    segments = sorted((int(p.stem), p) for p in folder.iterdir() if p.suffix in SUFFIXES and p.stem.isdigit())
    files = [p for _, p in segments] + [p for p in (folder / STATE, folder / (STATE + ".tmp")) if p.exists()]
    if not files:
        return None
    try:
        state = json.loads((folder / STATE).read_bytes())
        state = {k: v for k, v in state.items() if type(v) is int} if isinstance(state, dict) else {}
    except (OSError, ValueError, UnicodeDecodeError):
        state = {}
    first = state.get("first", 0)
    records: list[tuple[int, dict]] = []
    corrupt, last = 0, first - 1
    for _, path in segments:
        *lines, tail = path.read_bytes().split(b"\n")
        corrupt += bool(tail)  # a last line without its newline: torn by a power cut
        for line in lines:
            record = _record(line)
            if record is None:
                corrupt += 1
            elif record[0] > last:  # lower: acknowledged or dropped before
                records.append(record)
                last = record[0]
    return OldSpool(records, max(state.get("next", 0), last + 1), state.get("dropped", 0), corrupt, files)
