"""The MQTT event sink: events to topics, the scene's state, Home Assistant discovery, and the on-disk spool.

Topics, all under ``<topic_prefix>/<device_id>``:

* ``availability``: retained ``online`` on every connect; ``offline`` on clean
  close, and as the last will when the device dies or loses the network;
* ``events``: track, state and status events as JSON, QoS 1, in order;
* ``summary``: summary events as JSON, QoS 1;
* ``state``: retained, the scene's state (``unmasked``, ``incorrect``, ``masked``, ``idle``);
* ``unmasked``: retained ``ON``/``OFF``, whether the state is ``unmasked``.

Both state topics follow the pipeline's ``state`` events (the decision, with
its hold and cool-down timing), and are sent again on every connect.
The connection itself (TLS, last will, retries, a shared client id) is
``MqttConnection``; the discovery payloads come from ``discovery_configs``. They
are re-sent when Home Assistant announces itself on ``<discovery_prefix>/status``,
at most once per ``DISCOVERY_MIN_INTERVAL_S`` however often it does, so a flood
there never crowds out events.

A broker that is down is a one-line ``BrokerUnavailable`` at start when
``required``; otherwise it is logged and paho keeps retrying in its loop
(events queue, up to ``max_queued``). ``connected`` says which.

With ``spool_dir`` every event is first written to an on-disk ``Spool`` and a
sender thread publishes the backlog in order, at most ``SPOOL_WINDOW`` in
flight and only while connected, removing each event once the broker's PUBACK
arrived (at-least-once: a duplicate only for an event in flight when the
connection or the process died). Events outlive a broker outage, a restart or
a power cut; past the spool's bounds the oldest are dropped (``spool.dropped``).

Example::

    with MqttSink(MqttConfig(host="broker.local", required=True), device_id="pole-12") as sink:
        sink.publish(track_event("new", 7, "without_mask", 0.93, device_id="pole-12"))
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque

from ..errors import ConfigError
from .discovery import discovery_configs, node_id
from .mqtt_config import MqttConfig, valid_topic_part
from .mqtt_connection import BrokerUnavailable, MqttConnection
from .sink import Sink
from .spool import Spool

log = logging.getLogger(__name__)
#: spooled events published but not yet acknowledged, at most (paho's default max_inflight is 20)
SPOOL_WINDOW = 20
#: Home Assistant's birth messages re-send the discovery configs at most this often
DISCOVERY_MIN_INTERVAL_S = 30.0
TOPICS = ("availability", "events", "summary", "state", "unmasked")

__all__ = ["BrokerUnavailable", "MqttConfig", "MqttSink", "valid_topic_part"]


class MqttSink(Sink):
    """Publishes events to an MQTT broker; see the module docstring for topics."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, *, device_id: str):
        if not valid_topic_part(device_id):
            raise ConfigError(f"device_id {device_id!r} cannot be an MQTT topic level (no / + # or empty)")
        self.config, self.device_id = config, device_id
        base = f"{config.topic_prefix}/{device_id}"
        self.topics = {k: f"{base}/{k}" for k in TOPICS}
        self.dropped = 0  # events refused because the queue was full
        self._unconfirmed: set[int] = set()  # without a spool: mids of events the broker has not confirmed yet
        self._confirmed: set[int] = set()  # mids paho reported acknowledged (PUBACK), not yet matched
        self._confirmed_lock = threading.Lock()
        self.scene = "idle"  #: the last state event's state
        self._lock = threading.Lock()
        self._wake = threading.Event()  # wakes the spool's sender
        self._birth_answered_at: float | None = None  # when a Home Assistant birth message was last answered
        self._discovery_timer: threading.Timer | None = None
        self.discovery_requests_held = 0  #: Home Assistant birth messages answered late, by the rate limit
        self.connection = MqttConnection(config, client_id=config.client_id or f"maskwatch-{node_id(device_id)}",
                                         availability=self.topics["availability"], on_connected=self._on_connected)
        self._client = self.connection.client
        self._client.on_publish = self._on_publish
        self._queue_full = self.connection.mqtt.MQTT_ERR_QUEUE_SIZE
        if config.discovery:
            self.connection.subscribe(f"{config.discovery_prefix}/status", self._on_birth)
        self.spool: Spool | None = None
        if config.spool_dir is not None:
            self._open_spool(self._client)
        try:
            self.connection.start()
        except BaseException:
            if self.spool is not None:
                self.spool.close()
            raise
        if self.spool is not None:
            self._sender.start()

    @property
    def where(self) -> str:
        return self.connection.where

    @property
    def connected(self) -> bool:
        """True only while the broker has accepted the connection and it is up."""
        return self.connection.connected

    def _on_connected(self) -> None:
        if self.config.discovery:
            self._publish_discovery()
        self._publish_scene()
        self._wake.set()

    def discovery_configs(self) -> dict[str, dict]:
        """Home Assistant discovery topic -> config payload, for every entity of this device."""
        return discovery_configs(self.device_id, self.topics, self.config.discovery_prefix)

    def _publish_discovery(self) -> None:
        for topic, payload in self.discovery_configs().items():
            self.connection.publish(topic, json.dumps(payload), qos=1, retain=True)

    def _on_birth(self, message) -> None:
        """Home Assistant (re)started: send the configs again, at most once per DISCOVERY_MIN_INTERVAL_S."""
        if message.payload != b"online" or self.closed:
            return
        with self._lock:
            now = time.monotonic()
            since = None if self._birth_answered_at is None else now - self._birth_answered_at
            if since is not None and since < DISCOVERY_MIN_INTERVAL_S:
                self.discovery_requests_held += 1
                if self._discovery_timer is None:  # one deferred re-send answers every request in the window
                    log.warning("%s: Home Assistant asked for discovery again after %.1f s; answering at most "
                                "once per %.0f s", self.where, since, DISCOVERY_MIN_INTERVAL_S)
                    self._discovery_timer = threading.Timer(DISCOVERY_MIN_INTERVAL_S - since, self._deferred_discovery)
                    self._discovery_timer.daemon = True
                    self._discovery_timer.start()
                return
            self._birth_answered_at = now
        self._publish_discovery()

    def _deferred_discovery(self) -> None:
        with self._lock:
            self._discovery_timer, self._birth_answered_at = None, time.monotonic()
        if self.connected and not self.closed:
            self._publish_discovery()

    def _publish_scene(self) -> None:
        scene = self.scene
        self.connection.publish(self.topics["state"], scene, qos=1, retain=True)
        self.connection.publish(self.topics["unmasked"], "ON" if scene == "unmasked" else "OFF", qos=1, retain=True)

    def write(self, event: dict) -> None:
        if self.spool is not None:
            self.spool.append(event)
            self._wake.set()
        else:
            self._publish_event(event)
        if event["type"] == "state":
            self.scene = event["state"]
            if self.connected:  # else sent on the next connect
                self._publish_scene()

    def _publish_event(self, event: dict):
        topic = self.topics["summary" if event["type"] == "summary" else "events"]
        info = self.connection.publish(topic, json.dumps(event, separators=(",", ":"), allow_nan=False), qos=1)
        if self.spool is None:
            if info.rc == self._queue_full:
                self.dropped += 1
                self.connection.warn(f"{self.where}: {self.config.max_queued} events queued; dropping new ones")
            else:
                with self._confirmed_lock:
                    self._unconfirmed.add(info.mid)
                    self._unconfirmed -= self._confirmed
                    self._confirmed.clear()
        return info

    # --- the spool: every event on disk first, published in order by one sender thread -------------

    def _open_spool(self, client) -> None:
        config = self.config
        self.spool = Spool(config.spool_dir, max_bytes=config.spool_max_bytes, max_events=config.spool_max_events,
                           durability=config.spool_durability)
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send_spooled, name=f"mqtt-spool-{self.device_id}", daemon=True)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # paho holds its message lock here: take only our own small lock, never call paho
        with self._confirmed_lock:
            self._confirmed.add(mid)
        self._wake.set()

    def _send_spooled(self) -> None:
        """Publish the spool's backlog in order while connected; ack each event once the broker confirmed it."""
        mqtt = self.connection.mqtt
        inflight: deque[tuple[int, int, int]] = deque()  # (seq, mid, generation), oldest first
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            stopping = self._stop.is_set()
            done = None
            with self._confirmed_lock:
                while inflight and inflight[0][1] in self._confirmed:
                    done = inflight.popleft()[0]
                self._confirmed &= {mid for _, mid, _ in inflight}  # forget mids of other messages
            if done is not None:
                self.spool.ack(done)
            if stopping:
                return
            generation = self.connection.generation
            # events sent on an earlier connection are resent by paho on reconnect: wait for them, to keep order
            if not self.connected or any(gen != generation for _, _, gen in inflight):
                continue
            after = inflight[-1][0] if inflight else None
            for seq, event in self.spool.peek(after, SPOOL_WINDOW - len(inflight)):
                info = self._publish_event(event)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    break  # paho's queue is full (or it refused): retried on the next round
                inflight.append((seq, info.mid, generation))

    def _drain_spool(self, timeout_s: float) -> None:
        """At close: give a connected broker ``timeout_s`` to take the backlog, then stop the sender and flush."""
        deadline = time.monotonic() + timeout_s
        while self.connected and len(self.spool) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._sender.is_alive():
            self._sender.join(timeout_s)
        self.spool.close()
        if len(self.spool):
            log.info("%s: %d events stay in spool %s for the next start", self.where, len(self.spool),
                     self.spool.folder)

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Send the spool's backlog (when connected, up to ``timeout_s``), then ``offline`` and disconnect."""
        timer = self._discovery_timer
        if timer is not None:
            timer.cancel()
        if self.spool is not None:
            self._drain_spool(timeout_s)
        else:
            self._wait_unconfirmed(timeout_s)
        self.connection.close(timeout_s)

    def _wait_unconfirmed(self, timeout_s: float) -> None:
        """Without a spool: give a connected broker ``timeout_s`` to confirm queued events; say what is lost."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._confirmed_lock:
                self._unconfirmed -= self._confirmed
                lost = len(self._unconfirmed)
            if not lost or not self.connected or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if lost:
            log.warning("%s: %d events queued in memory were never confirmed by the broker and are lost at exit "
                        "(set mqtt.spool_dir to keep them on disk until delivered)", self.where, lost)
