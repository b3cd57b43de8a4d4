"""Faults against real components: a real Mosquitto started and stopped here, real paho clients, real processes killed.

The MQTT sink with ``spool_dir`` must deliver every event, in order, across a broker that is down at
start, a broker that dies mid-run, a full spool (oldest dropped and counted), a power cut (SIGKILL
mid-write: no corrupt record delivered, everything before it kept) and SIGTERM (close flushes).

Each test starts and stops its own broker on a free port (``.ci/mosquitto.sh``), whatever MASKWATCH_TEST_MQTT says.
Known race, small: after a broker restart the subscriber here must subscribe before the sink's reconnect
(paho retries after 1, 2, 4 ... s; the subscriber connects within milliseconds of the port opening).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import REPO, free_port, start_broker, stop_broker
from maskwatch.edge.events import MqttConfig, MqttSink, Spool, SpoolError, track_event

class Collector:
    """A real paho subscriber on one device's events topic; records track ids in arrival order."""

    def __init__(self, port: int, device: str):
        self.ids: list[int] = []
        self.bad: list[bytes] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port, 30)
        self.client.subscribe(f"maskwatch/{device}/events", qos=1)
        self.client.loop_start()
        assert subscribed.wait(5), "collector got no SUBACK"

    def _on_message(self, client, userdata, message) -> None:
        try:
            event = json.loads(message.payload)
            track_id = event["track_id"]
        except (ValueError, KeyError, TypeError):
            self.bad.append(message.payload)
            return
        with self._lock:
            self.ids.append(track_id)

    def wait_for(self, wanted: set[int], timeout: float = 15.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if wanted <= set(self.ids):
                    return list(self.ids)
            time.sleep(0.02)
        with self._lock:
            missing = sorted(wanted - set(self.ids))
        raise AssertionError(f"collector missing {len(missing)} events within {timeout} s: {missing[:10]}...")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def event(device: str, n: int) -> dict:
    return track_event("new", n, ("with_mask", "without_mask")[n % 2], 0.9, device_id=device)


def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)


def in_order_without_duplicates(ids: list[int]) -> list[int]:
    seen, out = set(), []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


@pytest.fixture
def port():
    port = free_port()
    yield port
    stop_broker(port)


@pytest.fixture
def device() -> str:
    return f"fault-{uuid.uuid4().hex[:8]}"


def sink_for(port: int, device: str, spool: Path, **options) -> MqttSink:
    return MqttSink(MqttConfig(host="127.0.0.1", port=port, spool_dir=spool, discovery=False, **options),
                    device_id=device)


def test_broker_down_at_start_then_every_event_arrives_in_order(tmp_path, port, device):
    sink = sink_for(port, device, tmp_path / "spool")
    try:
        for n in range(40):
            sink.publish(event(device, n))
        assert not sink.connected and len(sink.spool) == 40
        start_broker(port)
        collector = Collector(port, device)
        try:
            ids = collector.wait_for(set(range(40)))
            wait_until(lambda: len(sink.spool) == 0, what="spool emptied by PUBACKs")
            sink.publish(event(device, 40))  # new events follow the backlog
            ids = collector.wait_for(set(range(41)))
            assert ids == list(range(41)) and not collector.bad
        finally:
            collector.close()
    finally:
        sink.close()
    with Spool(tmp_path / "spool") as spool:
        assert len(spool) == 0 and spool.dropped == 0


def test_broker_stopped_mid_run_then_restarted_delivers_the_rest_in_order(tmp_path, port, device):
    start_broker(port)
    collector = Collector(port, device)
    sink = sink_for(port, device, tmp_path / "spool")
    try:
        wait_until(lambda: sink.connected, what="sink connected")
        for n in range(20):
            sink.publish(event(device, n))
        collector.wait_for(set(range(20)))
        stop_broker(port)
        collector.close()
        for n in range(20, 30):  # the first may go into the dying socket (in flight): paho resends them
            sink.publish(event(device, n))
        wait_until(lambda: not sink.connected, what="sink noticed the broker is gone")
        for n in range(30, 50):
            sink.publish(event(device, n))
        assert len(sink.spool) >= 20
        start_broker(port)
        collector = Collector(port, device)
        ids = collector.wait_for(set(range(20, 50)), timeout=40)
        wait_until(lambda: len(sink.spool) == 0, what="spool emptied by PUBACKs")
        assert in_order_without_duplicates(ids) == list(range(20, 50)), ids
        assert len(ids) - 30 <= 20, f"duplicates beyond the in-flight window: {ids}"
        assert not collector.bad
    finally:
        collector.close()
        sink.close()


def broker_pid(port: int) -> int:
    """The pid .ci/mosquitto.sh recorded for the broker on ``port``."""
    return int((Path(os.environ.get("TMPDIR") or "/tmp") / f"maskwatch-mosquitto.{port}" / "mosquitto.pid").read_text())


def test_broker_killed_with_events_in_flight_resends_them_first(tmp_path, port, device):
    """Frozen broker (no PUBACK), then SIGKILL: paho resends the in-flight events; the spool waits for them."""
    start_broker(port)
    collector = Collector(port, device)
    sink = sink_for(port, device, tmp_path / "spool")
    try:
        wait_until(lambda: sink.connected, what="sink connected")
        for n in range(5):
            sink.publish(event(device, n))
        collector.wait_for(set(range(5)))
        pid = broker_pid(port)
        os.kill(pid, signal.SIGSTOP)
        for n in range(5, 15):  # sent into the frozen broker's socket: in flight, never acknowledged (< window)
            sink.publish(event(device, n))
        time.sleep(0.3)
        in_flight = len(sink._client._out_messages)
        os.kill(pid, signal.SIGKILL)
        collector.close()
        wait_until(lambda: not sink.connected, what="sink noticed the broker died")
        for n in range(15, 45):  # new ones must wait until paho has resent the in-flight ones
            sink.publish(event(device, n))
        assert in_flight >= 10 and len(sink.spool) == 40  # nothing was acknowledged: all still spooled
        stop_broker(port)  # clears the dead broker's state folder
        start_broker(port)
        collector = Collector(port, device)
        ids = collector.wait_for(set(range(5, 45)), timeout=40)
        wait_until(lambda: len(sink.spool) == 0, what="spool emptied by PUBACKs")
        assert ids == list(range(5, 45)), ids
    finally:
        collector.close()
        sink.close()


def test_full_spool_drops_the_oldest_and_counts_them(tmp_path, port, device, caplog):
    sink = sink_for(port, device, tmp_path / "spool", spool_max_events=10)
    try:
        for n in range(25):
            sink.publish(event(device, n))
        assert sink.spool.dropped == 15 and len(sink.spool) == 10
        assert "dropped the 1 oldest" in caplog.text
        start_broker(port)
        collector = Collector(port, device)
        try:
            ids = collector.wait_for(set(range(15, 25)))
            wait_until(lambda: len(sink.spool) == 0, what="spool emptied")
            time.sleep(0.2)
            assert ids == list(range(15, 25))
        finally:
            collector.close()
    finally:
        sink.close()
    with Spool(tmp_path / "spool") as spool:
        assert spool.dropped == 15  # persisted


def test_spool_bytes_bound_and_disk_space_is_reclaimed(tmp_path):
    folder = tmp_path / "spool"
    with Spool(folder, max_bytes=4096) as spool:
        for n in range(200):
            spool.append(event("pole", n))
        assert spool.pending_bytes <= 4096 and spool.dropped == 200 - len(spool)
        assert [r.seq for r in spool.peek()] == list(range(200 - len(spool), 200))
        dropped = spool.dropped
        spool.ack(199)
        assert len(spool) == 0
    # dropped and acknowledged rows free their pages for reuse; close checkpoints and removes the WAL
    assert (folder / "spool.db").stat().st_size <= 16 * 4096 and not (folder / "spool.db-wal").exists()
    with Spool(folder) as spool:
        assert len(spool) == 0 and spool.next_seq == 200 and spool.dropped == dropped


CHILD = textwrap.dedent("""
    import os, sys, time
    from maskwatch.edge.events import MqttConfig, MqttSink, track_event
    spool_dir, port, device, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sink = MqttSink(MqttConfig(host="127.0.0.1", port=port, spool_dir=spool_dir, discovery=False), device_id=device)
    if mode == "sigterm":
        import signal
        signal.signal(signal.SIGTERM, lambda *a: (sink.close(), sys.exit(0)))  # as maskwatch.edge.app.run: close the sinks
    n = 0
    while True:
        sink.publish(track_event("new", n, "with_mask", 0.9, device_id=device))
        n += 1
        print(n, flush=True)
        if mode == "torn" and n == 30:
            # a power cut mid-write: only the first half of the next WAL frame (a copy of the last) reached the disk
            with open(os.path.join(spool_dir, "spool.db-wal"), "rb+") as f:
                wal = f.read()
                frame = 24 + int.from_bytes(wal[8:12], "big")  # frame header + page size
                f.write(wal[-frame:][:frame // 2])
            print("torn", flush=True)
            time.sleep(60)
        if mode == "sigterm" and n == 25:
            print("ready", flush=True)
            time.sleep(60)
""")


def spawn(mode: str, spool: Path, port: int, device: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(spool), str(port), device, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def read_until(child: subprocess.Popen, stop, timeout: float = 20.0) -> str:
    """Child's stdout lines until ``stop(line)`` is true; returns that line."""
    deadline = time.monotonic() + timeout
    for line in child.stdout:
        if stop(line.strip()):
            return line.strip()
        if time.monotonic() > deadline:
            break
    child.kill()
    raise AssertionError(f"child never got there: {child.stderr.read()[-2000:]}")


def test_power_cut_mid_write_keeps_everything_before_the_torn_record(tmp_path, port, device):
    spool_dir = tmp_path / "spool"
    child = spawn("torn", spool_dir, port, device)
    read_until(child, lambda line: line == "torn")
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    start_broker(port)
    collector = Collector(port, device)
    sink = sink_for(port, device, spool_dir)  # a new process would open the spool the same way
    try:
        ids = collector.wait_for(set(range(30)))
        wait_until(lambda: len(sink.spool) == 0, what="spool emptied")
        time.sleep(0.2)
        assert ids == list(range(30)) and not collector.bad  # the torn frame fails its checksum: SQLite ignores it
    finally:
        collector.close()
        sink.close()


def test_sigkill_at_a_random_moment_loses_no_reported_event(tmp_path, port, device):
    spool_dir = tmp_path / "spool"
    child = spawn("loop", spool_dir, port, device)
    reported = int(read_until(child, lambda line: line.isdigit() and int(line) >= 60))
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    with Spool(spool_dir) as spool:
        records = spool.peek(limit=10**6)
    seqs = [r.seq for r in records]
    assert seqs == list(range(len(seqs))) and len(seqs) >= reported  # contiguous, nothing reported lost
    assert all(r.event["track_id"] == r.seq and r.event["device_id"] == device for r in records)


def test_sigterm_closes_the_sink_and_the_spool_keeps_every_event(tmp_path, port, device):
    spool_dir = tmp_path / "spool"
    child = spawn("sigterm", spool_dir, port, device)
    read_until(child, lambda line: line == "ready")
    child.send_signal(signal.SIGTERM)
    assert child.wait(10) == 0, child.stderr.read()[-2000:]
    with Spool(spool_dir) as spool:
        assert [r.event["track_id"] for r in spool.peek(limit=100)] == list(range(25)) and spool.next_seq == 25


def test_close_then_reopen_sees_the_events(tmp_path, port, device):
    sink = sink_for(port, device, tmp_path / "spool")
    for n in range(5):
        sink.publish(event(device, n))
    sink.close()
    sink.close()  # idempotent
    again = sink_for(port, device, tmp_path / "spool")
    try:
        assert [r.event["track_id"] for r in again.spool.peek()] == list(range(5))
    finally:
        again.close()


def test_a_spool_folder_is_held_by_one_process(tmp_path):
    with Spool(tmp_path / "spool"):
        with pytest.raises(SpoolError, match="in use by another process"):
            Spool(tmp_path / "spool")


def test_spool_bounds_need_a_spool_dir():
    with pytest.raises(ValueError, match="spool_max_events need spool_dir"):
        MqttConfig(spool_max_events=5)
