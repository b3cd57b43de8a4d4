"""The ``mqtt`` config section: broker, credentials, topics, discovery and the on-disk spool.

Example::

    config = MqttConfig(host="broker.local", tls=True, spool_dir="/var/lib/maskwatch/spool")
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ..errors import shorten

#: MQTT strings may be 65535 bytes, but paho's network thread dies packing one that long; brokers
#: are only required to take 23-character client ids, and every topic repeats the prefix.
MAX_CLIENT_ID = 256
MAX_TOPIC_PREFIX = 200


class MqttConfig(BaseModel):
    """The broker, credentials, topics and discovery."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="mqtt")

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
    client_id: str | None = Field(None, max_length=MAX_CLIENT_ID, title="client id",
                                  description=f"MQTT client id, at most {MAX_CLIENT_ID} characters; default maskwatch-<device_id>")
    protocol: Literal["5", "3.1.1"] = Field("5", title="protocol",
                                          description="MQTT protocol version: 5, or 3.1.1 for a broker without "
                                                      "MQTT 5")
    keepalive: int = Field(60, ge=5, le=65535, title="keepalive",
                           description="seconds between pings; the broker sends the last will "
                                       "after 1.5x this of silence")
    topic_prefix: str = Field("maskwatch", min_length=1, max_length=MAX_TOPIC_PREFIX, title="topic prefix",
                              description="every topic is <topic_prefix>/<device_id>/...")
    required: bool = Field(False, title="required",
                           description="true: a broker that is down stops start-up; false: log and keep retrying")
    connect_timeout_s: float = Field(5.0, gt=0, le=3600, title="connect timeout",
                                     description="when required, how long start-up waits for the broker's answer")
    max_queued: int = Field(1000, ge=1, title="queue limit",
                            description="events kept while disconnected; newer ones are dropped (and counted)")
    discovery: bool = Field(True, title="Home Assistant discovery",
                            description="publish Home Assistant discovery configs")
    discovery_prefix: str = Field("homeassistant", min_length=1, max_length=MAX_TOPIC_PREFIX, title="discovery prefix",
                                  description="Home Assistant's MQTT discovery prefix")
    spool_dir: Path | None = Field(None, title="spool folder",
                                   description="folder where events wait on disk until the broker acknowledged "
                                               "them, delivered in order after an outage or a restart; unset: "
                                               "paho's in-memory queue (max_queued)")
    spool_max_bytes: int = Field(10_000_000, ge=4096, title="spool size limit",
                                 description="bytes of events the spool keeps; past it the oldest are dropped "
                                             "(and counted)")
    spool_durability: Literal["full", "normal"] = Field(
        "full", title="spool durability",
        description="full: every event is on disk before publish returns (survives a power cut; one fsync per "
                    "event, a few ms on an SD card); normal: SQLite WAL's faster mode, a power cut may lose the "
                    "last events but never corrupts the spool")
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
        spool_only = [k for k in ("spool_max_bytes", "spool_max_events", "spool_durability")
                      if k in self.model_fields_set]
        if spool_only and self.spool_dir is None:
            raise ValueError(f"{', '.join(spool_only)} need spool_dir")
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            if not valid_topic_part(value, slashes=True):
                raise ValueError(f"{key} {shorten(repr(value))} must not contain + # NUL or empty levels")
            if value.startswith("$"):
                raise ValueError(f"{key} {shorten(repr(value))}: topics starting with $ are the broker's ($SYS)")
        if self.client_id is not None and (not self.client_id or not self.client_id.isprintable()):
            raise ValueError(f"client_id {shorten(repr(self.client_id))}: give printable characters, no NUL "
                             "or control characters (the broker refuses them without a word)")
        return self


def valid_topic_part(text: str, slashes: bool = False) -> bool:
    """True when ``text`` can be used in a topic (no wildcards, no empty level; ``/`` only with ``slashes``)."""
    return bool(text) and not set(text) & set("+#\0") and (slashes or "/" not in text) and "" not in text.split("/")
