"""MQTT sink (paho-mqtt 2.x, imported when a sink is built), with Home Assistant discovery.

Topics, all under ``<topic_prefix>/<device_id>``:

* ``availability``: retained ``online`` on every connect; ``offline`` on clean
  close, and as the last will when the device dies or loses the network;
* ``events``: track and status events as JSON, QoS 1, in order;
* ``summary``: summary events as JSON, QoS 1;
* ``unmasked``: retained ``ON``/``OFF``, whether an unmasked person is tracked now.

Discovery configs (retained, re-sent when Home Assistant announces itself on
``<discovery_prefix>/status``) declare a binary_sensor "Unmasked person present"
and sensors for the summary counts, grouped as one device.

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
import re
import threading
import time
from collections import deque
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .. import __version__
from ..errors import ConfigError, MaskwatchError, RuntimeUnavailable
from .schema import STATE_OF_LABEL, TRACK_TYPES
from .sink import Sink
from .spool import Spool

log = logging.getLogger(__name__)
#: spooled events published but not yet acknowledged, at most (paho's default max_inflight is 20)
SPOOL_WINDOW = 20

#: Home Assistant components this device declares: (component, object id, extra config)
DISCOVERY = (
    ("binary_sensor", "unmasked_present", {"name": "Unmasked person present", "device_class": "occupancy",
                                           "state_topic": "unmasked", "icon": "mdi:face-mask-outline"}),
    *(("sensor", f"{state}_people", {"name": name, "state_topic": "summary", "state_class": "measurement",
                                    "unit_of_measurement": "people", "icon": "mdi:face-mask",
                                    "value_template": f"{{{{ value_json.{state} }}}}"})
      for state, name in (("masked", "Masked people"), ("unmasked", "Unmasked people"),
                          ("incorrect", "Incorrectly masked people"))),
)


class BrokerUnavailable(MaskwatchError, ConnectionError):
    """The MQTT broker cannot be reached, or refused the connection, and the sink is ``required``."""


class MqttConfig(BaseModel):
    """The broker, credentials, topics and discovery."""

    model_config = ConfigDict(extra="forbid", title="mqtt")

    host: str = Field("localhost", title="host", description="broker host name or address")
    port: int | None = Field(None, ge=1, le=65535, title="port",
                             description="broker port; default 1883, or 8883 with tls")
    username: str | None = Field(None, title="username", description="user name, when the broker wants one")
    password: SecretStr | None = Field(None, title="password", description="password for username (never logged)")
    tls: bool = Field(False, title="TLS", description="connect with TLS (system CA store unless ca_file)")
    ca_file: Path | None = Field(None, title="CA file",
                                 description="PEM CA bundle that signed the broker's certificate")
    cert_file: Path | None = Field(None, title="client certificate",
                                   description="PEM client certificate, for mutual TLS")
    key_file: Path | None = Field(None, title="client key", description="PEM key of cert_file")
    insecure: bool = Field(False, title="insecure", description="skip the broker host name check (testing only)")
    client_id: str | None = Field(None, title="client id", description="MQTT client id; default maskwatch-<device_id>")
    keepalive: int = Field(60, ge=5, le=65535, title="keepalive",
                           description="seconds between pings; the broker sends the last will "
                                       "after 1.5x this of silence")
    topic_prefix: str = Field("maskwatch", min_length=1, title="topic prefix",
                              description="every topic is <topic_prefix>/<device_id>/...")
    required: bool = Field(False, title="required",
                           description="true: a broker that is down stops start-up; false: log and keep retrying")
    connect_timeout_s: float = Field(5.0, gt=0, title="connect timeout",
                                     description="when required, how long start-up waits for the broker's answer")
    max_queued: int = Field(1000, ge=1, title="queue limit",
                            description="events kept while disconnected; newer ones are dropped (and counted)")
    discovery: bool = Field(True, title="Home Assistant discovery",
                            description="publish Home Assistant discovery configs")
    discovery_prefix: str = Field("homeassistant", min_length=1, title="discovery prefix",
                                  description="Home Assistant's MQTT discovery prefix")
    spool_dir: Path | None = Field(None, title="spool folder",
                                   description="folder where events wait on disk until the broker acknowledged "
                                               "them, delivered in order after an outage or a restart; unset: "
                                               "paho's in-memory queue (max_queued)")
    spool_max_bytes: int = Field(10_000_000, ge=4096, title="spool size limit",
                                 description="bytes of events the spool keeps; past it the oldest are dropped "
                                             "(and counted)")
    spool_max_events: int | None = Field(None, ge=1, title="spool event limit",
                                         description="events the spool keeps; past it the oldest are dropped "
                                                     "(and counted); unset: only spool_max_bytes")

    @model_validator(mode="after")
    def _check(self):
        tls_only = [k for k in ("ca_file", "cert_file", "key_file", "insecure") if getattr(self, k)]
        if tls_only and not self.tls:
            raise ValueError(f"{', '.join(tls_only)} need tls: true")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        if self.password and not self.username:
            raise ValueError("password needs username")
        spool_only = [k for k in ("spool_max_bytes", "spool_max_events") if k in self.model_fields_set]
        if spool_only and self.spool_dir is None:
            raise ValueError(f"{', '.join(spool_only)} need spool_dir")
        for key in ("topic_prefix", "discovery_prefix"):
            if not valid_topic_part(getattr(self, key), slashes=True):
                raise ValueError(f"{key} {getattr(self, key)!r} must not contain + # or empty levels")
        return self


def valid_topic_part(text: str, slashes: bool = False) -> bool:
    return bool(text) and not set(text) & set("+#\0") and (slashes or "/" not in text) and "" not in text.split("/")


def paho_client_module():
    try:
        from paho.mqtt import client
    except ImportError:
        raise RuntimeUnavailable("paho-mqtt is not installed: pip install 'paho-mqtt>=2'") from None
    return client


class MqttSink(Sink):
    """Publishes events to an MQTT broker; see the module docstring for topics."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, *, device_id: str):
        if not valid_topic_part(device_id):
            raise ConfigError(f"device_id {device_id!r} cannot be an MQTT topic level (no / + # or empty)")
        mqtt = paho_client_module()
        self.config, self.device_id = config, device_id
        self.port = config.port or (8883 if config.tls else 1883)
        base = f"{config.topic_prefix}/{device_id}"
        self.topics = {k: f"{base}/{k}" for k in ("availability", "events", "summary", "unmasked")}
        self.dropped = 0  # events refused because the queue was full
        self._queue_full = mqtt.MQTT_ERR_QUEUE_SIZE
        self._node = re.sub(r"[^A-Za-z0-9_-]", "_", device_id)
        self._labels: dict[int, str] = {}  # track id -> label, tracks not ended
        self._lock = threading.Lock()
        self._connected, self._connack, self._refused, self._warned = False, threading.Event(), None, False
        self._generation, self._wake = 0, threading.Event()  # connections so far; wakes the spool's sender
        self._client = client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                            client_id=config.client_id or f"maskwatch-{self._node}")
        client.will_set(self.topics["availability"], "offline", qos=1, retain=True)
        if config.username:
            client.username_pw_set(config.username, config.password.get_secret_value() if config.password else None)
        if config.tls:
            try:
                client.tls_set(ca_certs=config.ca_file, certfile=config.cert_file, keyfile=config.key_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"mqtt tls: {exc}") from None
            client.tls_insecure_set(config.insecure)
        client.max_queued_messages_set(config.max_queued)
        client.reconnect_delay_set(1, 30)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail, client.on_message = self._on_connect_fail, self._on_message
        self.spool: Spool | None = None
        if config.spool_dir is not None:
            self._open_spool(client)
        try:
            self._start(client)
        except BaseException:
            if self.spool is not None:
                self.spool.close()
            raise
        if self.spool is not None:
            self._sender.start()

    @property
    def where(self) -> str:
        return f"MQTT broker {self.config.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """True only while the broker has accepted the connection and it is up."""
        return self._connected and self._client.is_connected()

    def _start(self, client) -> None:
        if not self.config.required:
            client.connect_async(self.config.host, self.port, self.config.keepalive)
            client.loop_start()
            return
        try:
            client.connect(self.config.host, self.port, self.config.keepalive)
        except OSError as exc:
            raise BrokerUnavailable(f"{self.where} unavailable: {exc.strerror or exc}") from None
        client.loop_start()
        if not self._connack.wait(self.config.connect_timeout_s) or not self._connected:
            client.disconnect()
            client.loop_stop()
            reason = self._refused or f"no answer within {self.config.connect_timeout_s:g} s"
            raise BrokerUnavailable(f"{self.where} did not accept the connection: {reason}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            if self._connack.is_set() or not self.config.required:  # at a required start, BrokerUnavailable says it
                self._warn(f"{self.where} refused the connection: {reason_code}; retrying")
            self._connack.set()
            return
        self._connected, self._warned = True, False
        self._generation += 1
        log.info("%s connected as %s", self.where, self.device_id)
        client.publish(self.topics["availability"], "online", qos=1, retain=True)
        if self.config.discovery:
            client.subscribe(f"{self.config.discovery_prefix}/status", qos=1)
            self._publish_discovery()
        self._publish_presence()
        self._connack.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._connack.is_set():  # closed before any CONNACK: e.g. plain MQTT to a TLS port
            self._refused = f"the broker closed the connection before answering ({reason_code}); check tls and port"
            if self.config.required:
                self._connack.set()
        was, self._connected = self._connected, False
        if was and not self.closed:
            self._warn(f"{self.where} connection lost ({reason_code}); retrying")

    def _on_connect_fail(self, client, userdata) -> None:
        self._warn(f"{self.where} unreachable; retrying")

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == f"{self.config.discovery_prefix}/status" and message.payload == b"online":
            self._publish_discovery()  # Home Assistant restarted

    def _warn(self, text: str) -> None:
        (log.debug if self._warned else log.warning)(text)
        self._warned = True

    def discovery_configs(self) -> dict[str, dict]:
        """Home Assistant discovery topic -> config payload, for every entity of this device."""
        device = {"identifiers": [f"maskwatch_{self._node}"], "name": f"maskwatch {self.device_id}",
                  "manufacturer": "maskwatch", "model": "maskwatch edge", "sw_version": __version__}
        configs = {}
        for component, object_id, extra in DISCOVERY:
            unique_id = f"maskwatch_{self._node}_{object_id}"
            configs[f"{self.config.discovery_prefix}/{component}/maskwatch_{self._node}/{object_id}/config"] = {
                **extra, "unique_id": unique_id, "state_topic": self.topics[extra["state_topic"]],
                "availability_topic": self.topics["availability"], "payload_available": "online",
                "payload_not_available": "offline", "qos": 1, "device": device,
                "origin": {"name": "maskwatch", "sw_version": __version__},
            }
        return configs

    def _publish_discovery(self) -> None:
        for topic, payload in self.discovery_configs().items():
            self._client.publish(topic, json.dumps(payload), qos=1, retain=True)

    def _publish_presence(self) -> None:
        with self._lock:
            present = any(STATE_OF_LABEL.get(label) == "unmasked" for label in self._labels.values())
        self._client.publish(self.topics["unmasked"], "ON" if present else "OFF", qos=1, retain=True)

    def write(self, event: dict) -> None:
        if self.spool is not None:
            self.spool.append(event)
            self._wake.set()
        else:
            self._publish_event(event)
        if event["type"] in TRACK_TYPES and self._track(event):
            self._publish_presence()

    def _publish_event(self, event: dict):
        topic = self.topics["summary" if event["type"] == "summary" else "events"]
        info = self._client.publish(topic, json.dumps(event, separators=(",", ":"), allow_nan=False), qos=1)
        if info.rc == self._queue_full and self.spool is None:
            self.dropped += 1
            self._warn(f"{self.where}: {self.config.max_queued} events queued; dropping new ones")
        return info

    # --- the spool: every event on disk first, published in order by one sender thread -------------

    def _open_spool(self, client) -> None:
        config = self.config
        self.spool = Spool(config.spool_dir, max_bytes=config.spool_max_bytes, max_events=config.spool_max_events)
        self._stop = threading.Event()
        self._confirmed: set[int] = set()  # mids paho reported acknowledged (PUBACK)
        self._confirmed_lock = threading.Lock()
        self._sender = threading.Thread(target=self._send_spooled, name=f"mqtt-spool-{self.device_id}", daemon=True)
        client.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # paho holds its message lock here: take only our own small lock, never call paho
        with self._confirmed_lock:
            self._confirmed.add(mid)
        self._wake.set()

    def _send_spooled(self) -> None:
        """Publish the spool's backlog in order while connected; ack each event once the broker confirmed it."""
        mqtt = paho_client_module()
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
            generation = self._generation
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

    def _track(self, event: dict) -> bool:
        """Note a track's label; True when whether someone unmasked is present changed."""
        with self._lock:
            before = any(STATE_OF_LABEL.get(x) == "unmasked" for x in self._labels.values())
            if event["type"] == "end":
                self._labels.pop(event["track_id"], None)
            else:
                self._labels[event["track_id"]] = event["label"]
            return before != any(STATE_OF_LABEL.get(x) == "unmasked" for x in self._labels.values())

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Publish ``offline`` (when connected), wait for it, disconnect and stop paho's loop."""
        client = self._client
        if self.spool is not None:
            self._drain_spool(timeout_s)
        if self.connected:
            info = client.publish(self.topics["availability"], "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("%s: offline not confirmed: %s", self.where, exc)
        client.disconnect()
        client.loop_stop()
        self._connected = False
