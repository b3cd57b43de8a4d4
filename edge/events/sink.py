"""The one interface every event sink has: ``publish(event)`` and an idempotent ``close()``.

``publish`` checks the event once, with ``validate_event`` (known type, short
scalar values: no image or crop ever leaves the device), and hands it to
``deliver``; a sink that forwards to others (``Fanout``) calls their ``deliver``,
so an event is checked once however many sinks it reaches.

Example::

    with JsonlSink(JsonlConfig(path="events.jsonl")) as sink:
        sink.publish(track_event("new", 1, "with_mask", 0.97, device_id="pole-12"))
"""
from __future__ import annotations

from ..errors import MaskwatchError
from .schema import validate_event


class SinkClosed(MaskwatchError, RuntimeError):
    """``publish`` on a sink that was closed."""


class Sink:
    """Base of the sinks: subclasses implement ``write(event)`` and ``shutdown()``."""

    name = "sink"
    closed = False

    def publish(self, event: dict) -> None:
        """Validate ``event`` and send it on."""
        self.deliver(validate_event(event))

    def deliver(self, event: dict) -> None:
        """Send on an event that was already validated."""
        if self.closed:
            raise SinkClosed(f"{self.name}: publish after close")
        self.write(event)

    def close(self) -> None:
        """Flush and release; safe to call twice."""
        if not self.closed:
            self.closed = True
            self.shutdown()

    def write(self, event: dict) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
