"""The one interface every event sink has: ``publish(event)`` and an idempotent ``close()``.

``publish`` checks the event with ``validate_event`` (known type, short scalar
values: no image or crop ever leaves the device) and hands it to ``write``.

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
        if self.closed:
            raise SinkClosed(f"{self.name}: publish after close")
        self.write(validate_event(event))

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
