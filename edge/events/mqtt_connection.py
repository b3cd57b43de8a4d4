"""One MQTT broker connection (paho-mqtt 2.x, imported when a connection is made).

It owns what the broker is told and what it says: credentials, TLS, the
retained ``online``/``offline`` availability with its last will, the first
connect (a one-line ``BrokerUnavailable`` when ``required``, else paho retries
in its loop), reconnects, subscriptions (made again on every connect) and the
warnings about them. It knows nothing about events.

Two devices left on the same ``device_id`` share one client id and take the
connection from each other all day. That is logged once, as an error naming the
cause and the fix, when the broker says so (MQTT 5 reason "Session taken over",
where the broker sends it) or when connections keep closing soon after they were
accepted (``TAKEOVER_LOSSES`` in a row within ``TAKEOVER_WINDOW_S``; Mosquitto 2.0
just closes the socket).

Example::

    connection = MqttConnection(config, client_id="maskwatch-pole-12", availability="maskwatch/pole-12/availability")
    connection.start()
    connection.publish("maskwatch/pole-12/events", payload, qos=1)
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ..errors import ConfigError, MaskwatchError, RuntimeUnavailable
from .mqtt_config import MqttConfig

log = logging.getLogger(__name__)
#: MQTT 5 DISCONNECT reason "Session taken over": another client connected with this client id.
SESSION_TAKEN_OVER = 142
#: This many connections in a row closed within TAKEOVER_WINDOW_S of being accepted suggest a shared client id.
TAKEOVER_LOSSES, TAKEOVER_WINDOW_S = 3, 10.0


class BrokerUnavailable(MaskwatchError, ConnectionError):
    """The MQTT broker cannot be reached, or refused the connection, and the sink is ``required``."""


def paho_client_module():
    try:
        from paho.mqtt import client
    except ImportError:
        raise RuntimeUnavailable("paho-mqtt is not installed: pip install 'paho-mqtt>=2'") from None
    return client


class MqttConnection:
    """A paho client connected to ``config``'s broker; ``on_connected()`` runs after each accepted connect."""

    def __init__(self, config: MqttConfig, *, client_id: str, availability: str,
                 on_connected: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic):
        mqtt = self.mqtt = paho_client_module()
        self.config, self.client_id, self.availability = config, client_id, availability
        self.port = config.port or (8883 if config.tls else 1883)
        self._on_connected, self._clock = on_connected, clock
        self._handlers: dict[str, Callable] = {}  # subscribed topic -> handler(message)
        self._connected, self._connack, self._refused, self._warned = False, threading.Event(), None, False
        self.generation = 0  #: accepted connections so far
        self.takeovers = 0  #: connections closed because another client took this client id
        self._accepted_at: float | None = None
        self._quick_losses: list[float] = []
        self._closing = False
        self._silence: threading.Timer | None = None
        self._refused_now = False  # the last CONNACK refused the connection (its disconnect follows)
        protocol = mqtt.MQTTv5 if config.protocol == "5" else mqtt.MQTTv311
        self.client = client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        client.will_set(availability, "offline", qos=1, retain=True)
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

    @property
    def where(self) -> str:
        return f"MQTT broker {self.config.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """True only while the broker has accepted the connection and it is up."""
        return self._connected and self.client.is_connected()

    def subscribe(self, topic: str, handler: Callable) -> None:
        """Call ``handler(message)`` for each message on ``topic``, on this and every later connection."""
        self._handlers[topic] = handler
        if self.connected:
            self.client.subscribe(topic, qos=1)

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False):
        """paho's ``publish``: its MQTTMessageInfo (``rc``, ``mid``)."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def start(self) -> None:
        """Connect: when ``required``, wait for the broker's answer (else BrokerUnavailable); else in the background."""
        client, config = self.client, self.config
        if not config.required:
            client.connect_async(config.host, self.port, config.keepalive)
            client.loop_start()
            # a broker that takes the connection and never answers leaves paho waiting without a callback
            self._silence = threading.Timer(config.connect_timeout_s, self._no_answer)
            self._silence.daemon = True
            self._silence.start()
            return
        try:
            client.connect(config.host, self.port, config.keepalive)
        except OSError as exc:
            raise BrokerUnavailable(f"{self.where} unavailable: {exc.strerror or exc}") from None
        client.loop_start()
        if not self._connack.wait(config.connect_timeout_s) or not self._connected:
            client.disconnect()
            client.loop_stop()
            reason = self._refused or f"no answer within {config.connect_timeout_s:g} s"
            raise BrokerUnavailable(f"{self.where} did not accept the connection: {reason}")

    def _no_answer(self) -> None:
        if not self._connack.is_set() and not self._closing:
            self.warn(f"{self.where} has not answered the connection within {self.config.connect_timeout_s:g} s "
                      "(a silent or wrong service on that port?); retrying")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused, self._refused_now = str(reason_code), True
            if self._connack.is_set() or not self.config.required:  # at a required start, BrokerUnavailable says it
                self.warn(f"{self.where} refused the connection: {reason_code}; retrying")
            self._connack.set()
            return
        self._connected, self._warned = True, False
        self._accepted_at = self._clock()
        self.generation += 1
        log.info("%s connected as %s", self.where, self.client_id)
        client.publish(self.availability, "online", qos=1, retain=True)
        for topic in self._handlers:
            client.subscribe(topic, qos=1)
        self._on_connected()
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was, self._connected = self._connected, False
        refused, self._refused_now = self._refused_now, False
        if self._closing:
            return
        if not was:  # this attempt was never accepted
            if refused:  # a CONNACK refused it: _on_connect said so
                return
            # closed before any CONNACK: plain MQTT to a TLS port, or a service that is no broker
            self._refused = f"the broker closed the connection before answering ({reason_code}); check tls and port"
            if self.config.required and not self._connack.is_set():
                self._connack.set()
            else:
                self.warn(f"{self.where}: {self._refused}; retrying")
            return
        if getattr(reason_code, "value", None) == SESSION_TAKEN_OVER:
            self.takeovers += 1
            (log.error if self.takeovers == 1 else log.debug)(
                "%s: another client connected with client id %r and took over this connection (%s): two devices "
                "share one device_id (the default is the host name); give each a unique device_id or mqtt.client_id",
                self.where, self.client_id, reason_code)
            return
        if self._quick_loss():  # no reason given: a shared client id, or a broker that drops this client
            self.takeovers += 1
            (log.error if self.takeovers == 1 else log.debug)(
                "%s keeps closing the connection within seconds of accepting it (%s): another client may use "
                "client id %r (two devices on one device_id: give each its own device_id or mqtt.client_id), "
                "or the broker drops this client (check its log)", self.where, reason_code, self.client_id)
            return
        self.warn(f"{self.where} connection lost ({reason_code}); retrying")

    def _quick_loss(self) -> bool:
        """True once TAKEOVER_LOSSES connections in a row closed within TAKEOVER_WINDOW_S of connecting."""
        if self._accepted_at is None:
            return False
        now = self._clock()
        if now - self._accepted_at > TAKEOVER_WINDOW_S:
            self._quick_losses.clear()
            return False
        self._quick_losses.append(now)
        return len(self._quick_losses) >= TAKEOVER_LOSSES

    def _on_connect_fail(self, client, userdata) -> None:
        self._quick_losses.clear()  # a broker that cannot be reached in between is flapping, not taken over
        self.warn(f"{self.where} unreachable; retrying")

    def _on_message(self, client, userdata, message) -> None:
        handler = self._handlers.get(message.topic)
        if handler is not None:
            handler(message)

    def warn(self, text: str) -> None:
        """A warning, then the same at debug level until the next accepted connect (no flood while retrying)."""
        (log.debug if self._warned else log.warning)(text)
        self._warned = True

    def close(self, timeout_s: float = 2.0) -> None:
        """Publish ``offline`` (when connected) and wait for it, then disconnect and stop paho's loop."""
        self._closing = True
        if self._silence is not None:
            self._silence.cancel()
        if self.connected:
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("%s: offline not confirmed: %s", self.where, exc)
        self.client.disconnect()
        self.client.loop_stop()
        self._connected = False
