"""maskwatch.edge.events: JSON Lines rotation, the privacy rule, summaries, and MQTT against a real Mosquitto broker.

The broker comes from MASKWATCH_TEST_MQTT=host:port when set, else ``.ci/mosquitto.sh`` starts one on a
free port of 127.0.0.1 for this module (installing Mosquitto with apt-get when missing) and stops it after.
"""
from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from conftest import REPO, free_port, next_message, start_broker, stop_broker
from maskwatch.edge.errors import ConfigError
from maskwatch.edge.events.discovery import discovery_configs
from maskwatch.edge.events.mqtt import TOPICS
from maskwatch.edge.events import (BrokerUnavailable, EventError, Fanout, JsonlConfig, JsonlSink, MqttConfig,
                         MqttSink, SinkClosed, SummaryCounter, open_sinks, state_event, status_event,
                                  track_event)

class Subscriber:
    """A real paho client that records every message on ``topics`` (QoS 1)."""

    def __init__(self, host: str, port: int, topics: list[str]):
        self.messages: queue.Queue = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)
        subscribed = []
        self.client.on_subscribe = lambda *args: subscribed.append(1)
        self.client.connect(host, port, 30)
        self.client.subscribe([(topic, 1) for topic in topics])
        self.client.loop_start()
        deadline = time.monotonic() + 5
        while not subscribed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert subscribed, "subscriber got no SUBACK"

    def next(self, topic: str, timeout: float = 5.0):
        """The next message on ``topic`` (others are skipped)."""
        return next_message(self.messages, topic, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribers(broker):
    made = []

    def subscribe(*topics: str) -> Subscriber:
        made.append(Subscriber(*broker, list(topics)))
        return made[-1]

    yield subscribe
    for sub in made:
        sub.close()


@pytest.fixture
def device_id(broker):
    """A fresh device id; its retained topics are cleared afterwards (the broker may be shared)."""
    device = f"test-{uuid.uuid4().hex[:8]}"
    yield device
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(*broker, 30)
    client.loop_start()
    sink_topics = [f"maskwatch/{device}/{k}" for k in ("availability", "state", "unmasked")]
    config_topics = list(discovery_configs(device, dict.fromkeys(TOPICS, "")))
    for topic in sink_topics + config_topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def events_for(device: str, n: int) -> list[dict]:
    labels = ["with_mask", "without_mask", "mask_weared_incorrect"]
    return [track_event("new" if i % 3 == 0 else "update", i // 3, labels[i % 3], 0.5 + i / (2 * n), device_id=device)
            for i in range(n)]


# --- MQTT against the real broker -------------------------------------------------------------------


def test_mqtt_topics_discovery_order_and_clean_close(broker, device_id, subscribers):
    host, port = broker
    base = f"maskwatch/{device_id}"
    sink = MqttSink(MqttConfig(host=host, port=port, required=True), device_id=device_id)
    assert sink.connected
    live = subscribers(f"{base}/#")
    retained = subscribers(f"{base}/availability", f"homeassistant/+/maskwatch_{device_id}/+/config")
    online = retained.next(f"{base}/availability")
    assert (online.payload, online.retain) == (b"online", True)

    binary = retained.next(f"homeassistant/binary_sensor/maskwatch_{device_id}/unmasked_present/config")
    config = json.loads(binary.payload)
    assert binary.retain and config["state_topic"] == f"{base}/unmasked"
    assert config["availability_topic"] == f"{base}/availability"
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    assert config["unique_id"] == f"maskwatch_{device_id}_unmasked_present"
    assert config["device"]["identifiers"] == [f"maskwatch_{device_id}"]
    for state in ("masked", "unmasked", "incorrect"):
        sensor = json.loads(retained.next(f"homeassistant/sensor/maskwatch_{device_id}/{state}_people/config").payload)
        assert sensor["state_topic"] == f"{base}/summary" and state in sensor["value_template"]
        assert sensor["device"] == config["device"]

    retained.client.publish("homeassistant/status", "online", qos=1)  # Home Assistant restarted: configs again
    again = retained.next(f"homeassistant/binary_sensor/maskwatch_{device_id}/unmasked_present/config")
    assert json.loads(again.payload) == config

    sent = events_for(device_id, 30) + [status_event("camera_lost", device_id=device_id, detail="no frames for 5 s")]
    for event in sent:
        sink.publish(event)
    got = [live.next(f"{base}/events") for _ in sent]
    assert [json.loads(m.payload) for m in got] == sent  # all of them, in order, as JSON
    assert {m.qos for m in got} == {1}

    summary = SummaryCounter(10, device_id=device_id, clock=lambda: 0.0)
    for event in sent:
        summary.add(event)
    event = summary.poll(now=10.0)
    sink.publish(event)
    assert json.loads(live.next(f"{base}/summary").payload) == event
    assert (event["masked"], event["unmasked"], event["incorrect"]) == (0, 0, 10)  # each track's latest label

    sink.publish(track_event("new", 99, "without_mask", 0.9, device_id=device_id))
    sink.publish(state_event("unmasked", "idle", device_id=device_id))  # the decision, not a track, moves presence
    assert json.loads(live.next(f"{base}/events").payload)["type"] == "new"
    assert json.loads(live.next(f"{base}/events").payload)["state"] == "unmasked"
    assert (live.next(f"{base}/state").payload, live.next(f"{base}/unmasked").payload) == (b"unmasked", b"ON")
    sink.publish(state_event("masked", "unmasked", device_id=device_id))
    assert (live.next(f"{base}/state").payload, live.next(f"{base}/unmasked").payload) == (b"masked", b"OFF")

    sink.close()
    sink.close()
    assert not sink.connected
    assert live.next(f"{base}/availability").payload == b"offline"
    later = subscribers(f"{base}/availability").next(f"{base}/availability")
    assert (later.payload, later.retain) == (b"offline", True)
    with pytest.raises(SinkClosed):
        sink.publish(sent[0])


SINK_THEN_WAIT = """
import sys, time
from maskwatch.edge.events import MqttConfig, MqttSink
sink = MqttSink(MqttConfig(host=sys.argv[1], port=int(sys.argv[2]), required=True), device_id=sys.argv[3])
print("connected", sink.connected, flush=True)
time.sleep(60)
"""


def test_mqtt_last_will_when_the_publisher_is_killed(broker, device_id, subscribers):
    host, port = broker
    topic = f"maskwatch/{device_id}/availability"
    sub = subscribers(topic)
    proc = subprocess.Popen([sys.executable, "-c", SINK_THEN_WAIT, host, str(port), device_id],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "connected True"
        assert sub.next(topic).payload == b"online"
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        will = sub.next(topic, timeout=5)
        assert will.payload == b"offline"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    retained = subscribers(topic).next(topic)
    assert (retained.payload, retained.retain) == (b"offline", True)


def test_mqtt_required_broker_down_is_one_line_error():
    port = free_port()  # nothing listens here
    with pytest.raises(BrokerUnavailable) as info:
        MqttSink(MqttConfig(host="127.0.0.1", port=port, required=True), device_id="pole-1")
    assert isinstance(info.value, ConnectionError)
    assert str(info.value) == f"MQTT broker 127.0.0.1:{port} unavailable: Connection refused"


def test_mqtt_queue_limit_drops_and_counts():
    sink = MqttSink(MqttConfig(host="127.0.0.1", port=free_port(), max_queued=2), device_id="pole-queue")
    try:
        for event in events_for("pole-queue", 5):
            sink.publish(event)
        assert not sink.connected and sink.dropped == 3
    finally:
        sink.close()


def test_mqtt_optional_sink_retries_and_does_not_pretend(caplog):
    port = free_port()  # its own broker, started mid-test on this port
    sink = MqttSink(MqttConfig(host="127.0.0.1", port=port), device_id="pole-retry")
    try:
        time.sleep(0.3)
        assert not sink.connected
        assert "127.0.0.1:%d unreachable; retrying" % port in caplog.text
        queued = track_event("new", 1, "with_mask", 0.8, device_id="pole-retry")
        sink.publish(queued)  # kept in paho's queue until the broker is up
        start_broker(port)
        sub = Subscriber("127.0.0.1", port, ["maskwatch/pole-retry/events"])
        try:
            deadline = time.monotonic() + 10
            while not sink.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sink.connected
            assert json.loads(sub.next("maskwatch/pole-retry/events").payload) == queued
        finally:
            sub.close()
    finally:
        sink.close()
        stop_broker(port)


@pytest.mark.parametrize("options, words", [
    ({"hots": "x"}, ["hots", "Extra inputs"]),
    ({"ca_file": "ca.pem"}, ["ca_file need tls"]),
    ({"tls": True, "key_file": "k.pem"}, ["key_file needs cert_file"]),
    ({"topic_prefix": "mask/#"}, ["topic_prefix"]),
    ({"port": 0}, ["port"]),
])
def test_mqtt_config_rejects_typos_and_inconsistent_options(options, words):
    with pytest.raises(ValidationError) as info:
        MqttConfig.model_validate(options)
    for word in words:
        assert word in str(info.value)


def test_mqtt_device_id_must_be_one_topic_level():
    with pytest.raises(ConfigError, match="cannot be an MQTT topic level"):
        MqttSink(MqttConfig(), device_id="pole/1")


# --- JSON Lines -------------------------------------------------------------------------------------


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_rotates_by_size_and_every_line_parses(tmp_path):
    path = tmp_path / "logs" / "events.jsonl"
    sent = events_for("pole-1", 300)
    with JsonlSink(JsonlConfig(path=path, max_bytes=2000, backups=3)) as sink:
        for i, event in enumerate(sent):
            sink.publish(event)
            if i == 5:  # every line is on disk at once, not at close
                assert read_lines(path) == sent[:6]
    files = [path.with_name(f"events.jsonl.{n}") for n in (3, 2, 1)] + [path]
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(p.name for p in files)
    kept = []
    for file in files:
        assert 0 < file.stat().st_size <= 2000
        assert file.read_bytes().endswith(b"\n")
        kept += read_lines(file)
    assert kept == sent[-len(kept):]  # the newest events, in order, none torn
    assert len(kept) > 3 * 2000 // 200


def test_jsonl_backups_zero_keeps_only_the_current_file(tmp_path):
    path = tmp_path / "events.jsonl"
    with JsonlSink(JsonlConfig(path=path, max_bytes=500, backups=0)) as sink:
        for event in events_for("pole-1", 40):
            sink.publish(event)
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    assert 0 < path.stat().st_size <= 500 and read_lines(path)


def test_jsonl_cuts_a_torn_last_line(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    first = status_event("camera_recovered", device_id="pole-1")
    path.write_text(json.dumps(first) + "\n" + '{"type": "new", "track_')  # power cut mid-line
    with JsonlSink(JsonlConfig(path=path)) as sink:
        sink.publish(status_event("camera_lost", device_id="pole-1"))
    assert [e["status"] for e in read_lines(path)] == ["camera_recovered", "camera_lost"]
    assert "cut a torn last line (23 bytes)" in caplog.text


# --- events, privacy, fan-out, summaries ------------------------------------------------------------


@pytest.mark.parametrize("extra, words", [
    ({"crop": np.zeros((8, 8, 3), np.uint8)}, ["'crop' is a ndarray", "never images"]),
    ({"jpeg": b"\xff\xd8\xff"}, ["'jpeg' is a bytes"]),
    ({"box": [1, 2, 3, 4]}, ["'box' is a list"]),
    ({"image_b64": "A" * 5000}, ["'image_b64' is 5000 characters"]),
    ({"score": float("nan")}, ["NaN"]),
])
def test_events_never_carry_images_or_crops(tmp_path, extra, words):
    path = tmp_path / "events.jsonl"
    with JsonlSink(JsonlConfig(path=path)) as sink:
        with pytest.raises(EventError) as info:
            sink.publish({**track_event("new", 1, "without_mask", 0.9, device_id="pole-1"), **extra})
    assert not path.exists()  # refused before anything was written: not even an empty file
    for word in words:
        assert word in str(info.value)


def test_event_shapes():
    event = track_event("update", np.int64(3), "with_mask", np.float32(0.75), device_id="pole-1")
    assert event["track_id"] == 3 and type(event["track_id"]) is int and event["score"] == 0.75
    assert event["time"].endswith("Z") and datetime.fromisoformat(event["time"]).utcoffset().total_seconds() == 0
    with pytest.raises(EventError, match="'crash' is not one of"):
        status_event("crash", device_id="pole-1")
    with pytest.raises(EventError, match="'hello' is not one of"):
        JsonlSink.publish(Fanout([]), {"type": "hello"})
    with pytest.raises(EventError, match="new event lacks score"):
        Fanout([]).publish({"type": "new", "track_id": 1, "label": "x", "time": "t", "device_id": "d"})


def test_fanout_reaches_every_sink_even_when_one_fails(tmp_path):
    a, b = (JsonlSink(JsonlConfig(path=tmp_path / n)) for n in ("a.jsonl", "b.jsonl"))
    a.close()
    event = status_event("camera_lost", device_id="pole-1")
    with Fanout([a, b]) as sink, pytest.raises(SinkClosed):
        sink.publish(event)
    assert read_lines(tmp_path / "b.jsonl") == [event] and b.closed


def test_open_sinks_builds_the_configured_ones(tmp_path):
    with open_sinks("pole-1", jsonl=JsonlConfig(path=tmp_path / "e.jsonl")) as sink:
        assert [s.name for s in sink.sinks] == ["jsonl"]
        sink.publish(status_event("camera_lost", device_id="pole-1"))
    assert len(read_lines(tmp_path / "e.jsonl")) == 1
    assert open_sinks("pole-1").sinks == []
    with pytest.raises(BrokerUnavailable):  # a required broker that is down: the JSONL sink opened first is closed
        open_sinks("pole-1", jsonl=JsonlConfig(path=tmp_path / "f.jsonl"),
                   mqtt=MqttConfig(host="127.0.0.1", port=free_port(), required=True))


def test_summary_counts_tracks_per_interval():
    summary = SummaryCounter(60, device_id="pole-1", clock=lambda: 0.0)
    for event in [track_event("new", 1, "without_mask", 0.9, device_id="pole-1"),
                  track_event("update", 1, "with_mask", 0.8, device_id="pole-1"),  # counts once, by its latest label
                  track_event("new", 2, "mask_weared_incorrect", 0.7, device_id="pole-1"),
                  track_event("end", 2, "mask_weared_incorrect", 0.7, device_id="pole-1"),
                  status_event("camera_lost", device_id="pole-1")]:
        summary.add(event)
    assert summary.poll(now=59.9) is None
    first = summary.poll(now=60.0)
    assert {k: first[k] for k in ("type", "interval_s", "masked", "unmasked", "incorrect")} == {
        "type": "summary", "interval_s": 60, "masked": 1, "unmasked": 0, "incorrect": 1}
    second = summary.poll(now=120.0)  # track 1 is still there; track 2 ended
    assert (second["masked"], second["incorrect"]) == (1, 0)
    with pytest.raises(EventError):
        SummaryCounter(0, device_id="pole-1")
