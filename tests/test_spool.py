"""The on-disk spool on its own: order, bounds, durability modes, threads, upgrade, damage and a full disk.

Real SQLite files, real processes killed with SIGKILL, a real (tiny) tmpfs filled up; the MQTT side is in
test_faults.py.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from conftest import REPO, fill_disk, tmpfs
from maskwatch.edge.events import Spool, track_event
from maskwatch.edge.events import spool as spool_module

WARNING_FULL = "cannot write"


def event(n: int) -> dict:
    return track_event(("new", "update", "end")[n % 3], n, ("with_mask", "without_mask")[n % 2], 0.9,
                       device_id="pole-12")


def ids(spool: Spool) -> list[int]:
    return [r.event["track_id"] for r in spool.peek(limit=10**6)]


def test_order_ack_and_counters_survive_a_restart(tmp_path):
    with Spool(tmp_path / "s", max_events=10) as spool:
        assert [spool.append(event(n)) for n in range(25)] == list(range(25))
        assert spool.dropped == 15 and ids(spool) == list(range(15, 25))
        assert [r.seq for r in spool.peek(after=20, limit=2)] == [21, 22]
        assert spool.ack(17) == 3 and ids(spool) == list(range(18, 25))
    with Spool(tmp_path / "s", max_events=3) as spool:  # a smaller bound drops the oldest at open
        assert ids(spool) == [22, 23, 24] and spool.dropped == 19 and spool.next_seq == 25
        spool.ack(24)
    with Spool(tmp_path / "s") as spool:
        assert len(spool) == 0 and spool.next_seq == 25 and spool.dropped == 19  # a seq is never reused


def test_durability_is_one_of_two_names(tmp_path):
    with pytest.raises(ValueError, match="durability must be one of full, normal, not 'fast'"):
        Spool(tmp_path / "s", durability="fast")


APPENDER = textwrap.dedent("""
    import sys
    from maskwatch.edge.events import Spool, track_event
    spool = Spool(sys.argv[1], durability=sys.argv[2])
    n = 0
    while True:
        spool.append(track_event("new", n, "with_mask", 0.9, device_id="pole-12"))
        n += 1
        print(n, flush=True)
""")


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_sigkill_mid_append_loses_nothing_committed(tmp_path, durability):
    child = subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path / "s"), durability], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        if int(line) >= 300:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    reported = int(line)
    with Spool(tmp_path / "s") as spool:
        got = ids(spool)
    assert got == list(range(len(got))) and len(got) >= reported  # contiguous; every returned append kept


def test_one_thread_appends_while_another_peeks_and_acks(tmp_path):
    """The frame thread and the MQTT sender share one spool: everything arrives once, in order."""
    received: list[int] = []
    with Spool(tmp_path / "s") as spool:
        done = threading.Event()

        def send():
            while not (done.is_set() and len(spool) == 0):
                records = spool.peek(received[-1] if received else None, limit=20)
                received.extend(r.seq for r in records)
                if records:
                    spool.ack(records[-1].seq)

        sender = threading.Thread(target=send)
        sender.start()
        for n in range(1500):
            spool.append(event(n))
        done.set()
        sender.join(60)
        assert not sender.is_alive()
    assert received == list(range(1500))


# --- upgrade from the segmented log of maskwatch 0.1 --------------------------------------------------------


def write_old_spool(folder: Path, events: list[dict], *, first: int, dropped: int, per_segment: int) -> list[Path]:
    """A folder as maskwatch 0.1's Spool left it (byte for byte, checked against that code): JSON-line
    segments named by their first seq, sealed ``.seg`` then the ``.open`` one being written, and state.json."""
    folder.mkdir()
    (folder / "lock").touch()
    lines = [(json.dumps({"seq": seq, "event": e}, separators=(",", ":"), allow_nan=False) + "\n").encode()
             for seq, e in enumerate(events)]
    segments = []
    for start in range(0, len(lines), per_segment):
        suffix = ".seg" if start + per_segment < len(lines) else ".open"
        segments.append(folder / f"{start:012d}{suffix}")
        segments[-1].write_bytes(b"".join(lines[start:start + per_segment]))
    (folder / "state.json").write_bytes(json.dumps({"first": first, "next": len(events), "dropped": dropped}).encode())
    return segments


def test_an_old_spool_folder_is_migrated_in_order(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    folder = tmp_path / "s"
    write_old_spool(folder, [event(n) for n in range(95)], first=5, dropped=7, per_segment=20)  # 0..4 acked
    with Spool(folder) as spool:
        assert ids(spool) == list(range(5, 95)) and spool.next_seq == 95
        assert spool.dropped == 7 and spool.corrupt == 0
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("spool.db")) == ["lock"]
        spool.append(event(95))
    assert caplog.text.count("migrated 90 events from the previous release's segment files") == 1
    with Spool(folder) as spool:  # once only
        assert ids(spool) == list(range(5, 96)) and spool.dropped == 7


def test_migration_skips_a_corrupt_byte_and_a_torn_record_and_keeps_the_rest(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    folder = tmp_path / "s"
    segments = write_old_spool(folder, [event(n) for n in range(60)], first=0, dropped=0, per_segment=20)
    sealed = bytearray(segments[0].read_bytes())
    sealed[sealed.index(b'"track_id":7,') + 10] ^= 0x40  # one flipped bit (":" to "z") in record 7, sealed segment
    segments[0].write_bytes(bytes(sealed))
    with open(segments[-1], "ab") as f:
        f.write(b'{"seq":60,"event":{"type":"new","track_id":60,"lab')  # a power cut mid-write
    with Spool(folder) as spool:
        assert ids(spool) == [n for n in range(60) if n != 7] and spool.corrupt == 2
    assert "(2 unreadable records skipped" in caplog.text


# --- damage ---------------------------------------------------------------------------------------------


def filled(folder: Path, n: int) -> Path:
    with Spool(folder) as spool:
        for i in range(n):
            spool.append(event(i))
    return folder / "spool.db"  # closed: every row is in the database file, the WAL is gone


def test_an_event_whose_json_is_corrupt_is_skipped_counted_and_the_rest_kept(tmp_path, caplog):
    db = filled(tmp_path / "s", 50)
    data = db.read_bytes()
    db.write_bytes(data.replace(b'"track_id":20,', b'"track_id":20;'))  # same length: SQLite cannot tell
    with Spool(tmp_path / "s") as spool:
        assert ids(spool) == [n for n in range(50) if n != 20] and spool.corrupt == 1
    assert "skipped 1 events whose JSON is corrupt" in caplog.text
    with Spool(tmp_path / "s") as spool:
        assert len(spool) == 49 and spool.corrupt == 1  # deleted, and the count kept


def test_a_damaged_page_is_stepped_over_and_the_file_set_aside(tmp_path, caplog):
    db = filled(tmp_path / "s", 1000)
    data = bytearray(db.read_bytes())
    page = data.index(b'"track_id":500,') // 4096 * 4096
    data[page] = 0xFF  # not a b-tree page type: "database disk image is malformed"
    db.write_bytes(bytes(data))
    with Spool(tmp_path / "s") as spool:
        got = ids(spool)
        assert 0 < spool.corrupt < 100 and len(got) + spool.corrupt == 1000
        assert 500 not in got and got == sorted(got) and got[0] == 0 and got[-1] == 999  # the rest kept
        spool.append(event(1000))
    aside = [p.name for p in (tmp_path / "s").iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and f"moved it aside as {aside[0]}" in caplog.text
    with Spool(tmp_path / "s") as spool:
        assert ids(spool) == got + [1000]


def test_a_file_that_is_not_a_database_is_set_aside_and_the_spool_starts_empty(tmp_path, caplog):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "spool.db").write_bytes(b"this is not SQLite\n" * 300)
    with Spool(folder) as spool:
        assert len(spool) == 0
        spool.append(event(0))
        assert ids(spool) == [0]
    aside = [p for p in folder.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == b"this is not SQLite\n" * 300
    assert caplog.text.count(f"moved it aside as {aside[0].name}") == 1
    assert "file is not a database" in caplog.text


# --- a full disk ----------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB tmpfs."""
    with tmpfs(tmp_path / "mnt", "1m") as folder:
        yield folder


def test_a_full_disk_keeps_events_in_memory_then_writes_them_in_order(tiny_disk, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(spool_module, "OVERFLOW", 40)
    folder = tiny_disk / "spool"
    spool = Spool(folder)
    try:
        for n in range(20):
            spool.append(event(n))
        fill_disk(tiny_disk)
        for n in range(20, 70):  # refused by the disk: no raise; past 40 in memory the oldest of them go
            spool.append(event(n))
        assert caplog.text.count(WARNING_FULL) == 1 and spool.dropped == 10 and len(spool) == 60
        assert ids(spool) == list(range(20)) + list(range(30, 70))  # the disk's, then memory's
        assert spool.ack(4) == 5 and ids(spool)[0] == 5  # the deletion waits in memory too
        (tiny_disk / "filler").unlink()
        spool.append(event(70))
        assert caplog.text.count("writes again: 41 events moved from memory to disk") == 1
        assert caplog.text.count(WARNING_FULL) == 1
    finally:
        spool.close()
    with Spool(folder) as spool:
        written, got = list(range(71)), ids(spool)
        assert got == list(range(5, 20)) + list(range(30, 71))  # nothing lost but the 5 acked and 10 dropped
        assert len(got) + 5 + spool.dropped == len(written) and spool.dropped == 10


def test_a_disk_too_full_to_create_the_spool_starts_it_in_memory(tiny_disk, caplog):
    """No spool.db yet and no room to make one: the spool starts anyway, keeps events in memory,
    and makes the file once space returns, in order."""
    caplog.set_level(logging.INFO)
    filler = fill_disk(tiny_disk)
    folder = tiny_disk / "spool"
    folder.mkdir(exist_ok=True)
    spool = Spool(folder)
    try:
        assert "cannot be created" in caplog.text and "wait in memory" in caplog.text
        for n in range(10):
            spool.append(event(n))
        assert ids(spool) == list(range(10)) and spool.ack(2) == 3
        filler.unlink()
        spool.append(event(10))
        assert "writes again" in caplog.text and (folder / "spool.db").is_file()
    finally:
        spool.close()
    with Spool(folder) as spool:
        assert ids(spool) == list(range(3, 11))
