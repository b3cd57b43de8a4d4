"""What the runtime saw, as events: to a JSON Lines file, to MQTT (with Home Assistant discovery), or both.

Events are small dicts of scalars (see ``schema``): track ``new``/``update``/
``end``, the scene's ``state``, a periodic ``summary`` and camera ``status``. A sink has
``publish(event)`` and ``close()``; ``open_sinks`` builds the configured ones
behind one ``Fanout``. paho-mqtt is imported only when an MQTT sink is built.

Example::

    sink = open_sinks("pole-12", jsonl=JsonlConfig(path="events.jsonl"), mqtt=MqttConfig(host="broker.local"))
    sink.publish(track_event("new", 7, "without_mask", 0.93, device_id="pole-12"))
"""
from __future__ import annotations

from ..registry import Entry, Registry
from .fanout import Fanout
from .jsonl import JsonlConfig, JsonlSink
from .mqtt import MqttSink
from .mqtt_config import MqttConfig
from .mqtt_connection import BrokerUnavailable
from .schema import (STATE_OF_LABEL, EventError, SummaryCounter, state_event, status_event, track_event,
                     utc_now, validate_event)
from .sink import Sink, SinkClosed
from .spool import Spool, SpoolError
from .stdout import StdoutSink


#: config section under ``[events]`` -> the sink it opens (built as ``Sink(config, device_id=...)``)
SINKS = Registry("event sink", {
    "jsonl": Entry("maskwatch.edge.events.jsonl:JsonlSink"),
    "mqtt": Entry("maskwatch.edge.events.mqtt:MqttSink"),
})


def open_sinks(device_id: str, jsonl: JsonlConfig | None = None, mqtt: MqttConfig | None = None,
               stdout: bool = False) -> Fanout:
    """Every configured sink behind one Fanout (empty when none is); a sink that fails closes the others."""
    sinks: list[Sink] = [StdoutSink()] if stdout else []
    try:
        for name, config in (("jsonl", jsonl), ("mqtt", mqtt)):
            if config is not None:
                sinks.append(SINKS.load(name)(config, device_id=device_id))
    except Exception:
        for sink in sinks:
            sink.close()
        raise
    return Fanout(sinks)


__all__ = ["STATE_OF_LABEL", "BrokerUnavailable", "EventError", "Fanout", "JsonlConfig", "JsonlSink",
           "MqttConfig", "MqttSink", "SINKS", "Sink", "SinkClosed", "Spool", "SpoolError", "StdoutSink", "SummaryCounter", "open_sinks", "state_event", "status_event",
           "track_event", "utc_now", "validate_event"]
