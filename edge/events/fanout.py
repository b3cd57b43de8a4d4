"""``Fanout``: one sink that publishes every event to several sinks, in order.

Every sink gets every event even when an earlier one fails; the first failure
is raised afterwards, so a broken file never silences MQTT (or the other way round).

Example::

    sink = Fanout([JsonlSink(jsonl_config), MqttSink(mqtt_config, device_id="pole-12")])
    sink.publish(event)
"""
from __future__ import annotations

from .sink import Sink


class Fanout(Sink):
    """Publishes to each of ``sinks``; ``close()`` closes them all."""

    name = "fanout"

    def __init__(self, sinks):
        self.sinks = list(sinks)

    def write(self, event: dict) -> None:
        self._each(lambda sink: sink.deliver(event))  # validated once, by publish

    def shutdown(self) -> None:
        self._each(lambda sink: sink.close())

    def _each(self, call) -> None:
        first = None
        for sink in self.sinks:
            try:
                call(sink)
            except Exception as exc:  # noqa: BLE001 - raised below, after the other sinks had their turn
                first = first or exc
        if first is not None:
            raise first
