"""MQTT under pressure, against a real Mosquitto: discovery floods, a shared client id, events lost at exit.
Also the discovery payloads as pure data."""
from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from conftest import free_port
from maskwatch.edge.decision import STATES
from maskwatch.edge.events import MqttConfig, MqttSink, track_event
from maskwatch.edge.events.discovery import discovery_configs
from maskwatch.edge.events.mqtt import TOPICS


def client(broker, topics=()) -> tuple[mqtt.Client, queue.Queue]:
    messages: queue.Queue = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    c.on_message = lambda _c, _u, message: messages.put(message)
    c.connect(*broker, 30)
    for topic in topics:
        c.subscribe(topic, qos=1)
    c.loop_start()
    time.sleep(0.3)
    return c, messages


def drain(messages: queue.Queue, until, timeout: float = 10.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and not until(got):
        try:
            got.append(messages.get(timeout=0.1))
        except queue.Empty:
            pass
    return got


def test_discovery_payloads_are_pure_data():
    topics = {key: f"maskwatch/pole 7/{key}" for key in TOPICS}
    configs = discovery_configs("pole 7", topics, prefix="ha", version="9.9")
    assert sorted(configs) == sorted(f"ha/{c}/maskwatch_pole_7/{o}/config" for c, o in (
        ("binary_sensor", "unmasked_present"), ("sensor", "scene_state"), ("sensor", "masked_people"),
        ("sensor", "unmasked_people"), ("sensor", "incorrect_people")))
    by_id = {payload["unique_id"]: payload for payload in configs.values()}
    assert len(by_id) == 5 and all(uid.startswith("maskwatch_pole_7_") for uid in by_id)
    assert by_id["maskwatch_pole_7_unmasked_present"]["state_topic"] == "maskwatch/pole 7/unmasked"
    assert by_id["maskwatch_pole_7_scene_state"]["state_topic"] == "maskwatch/pole 7/state"
    assert by_id["maskwatch_pole_7_scene_state"]["options"] == list(STATES)
    assert {p["availability_topic"] for p in configs.values()} == {"maskwatch/pole 7/availability"}
    assert {p["device"]["sw_version"] for p in configs.values()} == {"9.9"}
    assert configs == discovery_configs("pole 7", topics, prefix="ha", version="9.9")  # no hidden state


def test_a_discovery_flood_never_crowds_out_events(broker, caplog):
    device = f"flood-{uuid.uuid4().hex[:6]}"
    base = f"maskwatch/{device}"
    config_topic = f"homeassistant/binary_sensor/maskwatch_{device}/unmasked_present/config"
    listener, messages = client(broker, [f"{base}/events", config_topic])
    flooder, _ = client(broker)
    sink = MqttSink(MqttConfig(host=broker[0], port=broker[1], required=True, max_queued=200), device_id=device)
    try:
        sent = []
        for i in range(135):
            for _ in range(10):  # unanswered by the rate limit, these re-send 6750 configs and overflow paho's queue
                flooder.publish("homeassistant/status", "online", qos=0)
            event = track_event("new", i, "without_mask", 0.9, device_id=device)
            sink.publish(event)
            sent.append(event)
        got = drain(messages, lambda got: sum(m.topic.endswith("/events") for m in got) >= len(sent))
        events = [json.loads(m.payload) for m in got if m.topic.endswith("/events")]
        assert events == sent  # every event, in order
        assert sink.dropped == 0
        configs = [m for m in got if m.topic == config_topic and m.payload]
        assert len(configs) <= 3, len(configs)  # on connect, the first birth, at most one deferred answer
        assert sink.discovery_requests_held > 100
        held = [r for r in caplog.records if "asked for discovery again" in r.getMessage()]
        assert len(held) == 1  # said once, not per message
    finally:
        sink.close()
        for c in (listener, flooder):
            c.publish(config_topic, b"", qos=1, retain=True) if c is listener else None
            c.disconnect()
            c.loop_stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_two_devices_on_one_device_id_are_named_as_the_cause(broker, caplog, protocol):
    caplog.set_level(logging.INFO, logger="maskwatch.edge.events")
    device = f"twin-{uuid.uuid4().hex[:6]}"
    config = MqttConfig(host=broker[0], port=broker[1], required=True, protocol=protocol, discovery=False)
    first = MqttSink(config, device_id=device)
    second = MqttSink(config, device_id=device)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (first.connection.takeovers or second.connection.takeovers):
            time.sleep(0.1)
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(f"client id 'maskwatch-{device}'" in e and "two devices" in e and "device_id" in e
                   for e in errors), errors
    finally:
        first.close()
        second.close()


def test_events_queued_in_memory_at_exit_are_reported(caplog):
    caplog.set_level(logging.WARNING, logger="maskwatch.edge.events")
    sink = MqttSink(MqttConfig(host="127.0.0.1", port=free_port(), required=False), device_id="pole-lost")
    for i in range(5):
        sink.publish(track_event("new", i, "without_mask", 0.9, device_id="pole-lost"))
    sink.close()
    lost = [r.getMessage() for r in caplog.records if "lost at exit" in r.getMessage()]
    assert len(lost) == 1 and "5 events queued in memory" in lost[0] and "spool_dir" in lost[0]


# ---------------------------------------------------------------- brokers that are not what they seem

class FakeBroker:
    """A TCP server on 127.0.0.1 playing a broker badly: ``mode`` is ``close`` (accept, then close
    without a word), ``silent`` (accept, read, never answer) or ``flap`` (accept the MQTT connect,
    drop it, then stop listening for a while, as a broker that keeps restarting)."""

    def __init__(self, mode: str, cycles: int = 4):
        self.mode, self.cycles, self.port = mode, cycles, free_port()
        self.accepted = 0
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._server = self._listen()  # bound before the client's first try
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _listen(self) -> socket.socket:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen()
        server.settimeout(0.2)
        return server

    def _serve(self) -> None:
        server = self._server
        deadline = time.monotonic() + 60  # bounded, whatever the client does
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            self.accepted += 1
            if self.mode == "close":
                conn.close()
            elif self.mode == "silent":
                self._held.append(conn)  # open, unanswered
            else:  # flap: a real CONNACK (MQTT 3.1.1, accepted), then the broker goes away for 1.5 s
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(1024)
                    conn.sendall(bytes([0x20, 0x02, 0x00, 0x00]))
                time.sleep(0.2)
                conn.close()
                if self.accepted >= self.cycles:
                    break
                # Down for 1.5 s, keeping the port bound: on Linux shutdown() stops listening but
                # holds an explicitly bound port, so the client's retries (or another test) cannot
                # take it as their own ephemeral port meanwhile.
                server.shutdown(socket.SHUT_RDWR)
                self._stop.wait(1.5)
                server.listen()
        server.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()


@pytest.mark.parametrize("mode, says", [("close", "closed the connection before answering"),
                                        ("silent", "has not answered the connection within 1 s")])
def test_a_port_that_is_no_broker_is_warned_about_during_the_run(caplog, mode, says):
    caplog.set_level(logging.WARNING, logger="maskwatch.edge.events")
    fake = FakeBroker(mode)
    sink = MqttSink(MqttConfig(host="127.0.0.1", port=fake.port, connect_timeout_s=1, protocol="3.1.1"),
                    device_id="pole-odd")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(says in r.getMessage() for r in caplog.records):
            time.sleep(0.1)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(says in w for w in warnings), warnings   # while running, not only "lost at exit"
        assert fake.accepted >= 1
    finally:
        sink.close()
        fake.close()


def test_a_flapping_broker_is_not_blamed_on_a_shared_device_id(caplog):
    caplog.set_level(logging.INFO, logger="maskwatch.edge.events")
    fake = FakeBroker("flap", cycles=4)
    sink = MqttSink(MqttConfig(host="127.0.0.1", port=fake.port, protocol="3.1.1", discovery=False),
                    device_id="pole-flap")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and fake.accepted < 4:
            time.sleep(0.1)
        assert fake.accepted >= 4, fake.accepted  # connected, dropped and came back several times
        messages = [r.getMessage() for r in caplog.records]
        assert not any("device_id" in m for m in messages if "pole-flap" in m or "client id" in m), messages
        assert any("unreachable" in m or "connection lost" in m for m in messages), messages
    finally:
        sink.close()
        fake.close()
