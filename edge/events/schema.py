"""The events maskwatch publishes, as plain dicts of JSON scalars (never an image, crop or box list).

Track events follow one tracked face: ``new`` (first voted label), ``update``
(label changed), ``end`` (track lost)::

    {"type": "new", "track_id": 7, "label": "without_mask", "score": 0.93,
     "time": "2025-05-01T12:00:00.123Z", "device_id": "pole-12"}

``state`` says the scene's decision changed (``unmasked``, ``incorrect``,
``masked``, ``idle``; see ``maskwatch.edge.decision``): lights, buzzer, the MQTT
state topics and the preview all follow it::

    {"type": "state", "state": "unmasked", "previous": "masked", "time": "...", "device_id": "pole-12"}

``summary`` counts the tracks seen in the last ``interval_s`` by state
(masked, unmasked, incorrect); ``status`` reports the camera (``camera_never_seen``
at start, ``camera_lost``, ``camera_recovered``, ``no_frames``, ``frames_resumed``). ``validate_event`` enforces the
privacy rule every sink applies, once, in ``Sink.publish``: only known types, their required keys, and
short scalar values. The constructors below build events; the sink checks them.

Example::

    sink.publish(track_event("new", 7, "without_mask", 0.93, device_id="pole-12"))
    if (summary := counter.poll()) is not None: sink.publish(summary)
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Callable

from ..errors import MaskwatchError
from ..decision import LABEL_STATE, STATES

TRACK_TYPES = ("new", "update", "end")
STATUSES = ("camera_never_seen", "camera_lost", "camera_recovered", "no_frames", "frames_resumed")
#: event type -> keys it must have
REQUIRED = {
    **{t: ("type", "track_id", "label", "score", "time", "device_id") for t in TRACK_TYPES},
    "summary": ("type", "interval_s", "masked", "unmasked", "incorrect", "time", "device_id"),
    "status": ("type", "status", "time", "device_id"),
    "state": ("type", "state", "previous", "time", "device_id"),
}
#: classifier label (or state name) -> state counted by the summary
STATE_OF_LABEL = {**LABEL_STATE, **{state: state for state in LABEL_STATE.values()}}
#: longest string value an event may carry: labels and ids, never an encoded image
MAX_STRING = 200


class EventError(MaskwatchError, ValueError):
    """An event is malformed, or carries something other than short scalars (an image, a crop)."""


def utc_now(when: datetime | None = None) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: ``2025-05-01T12:00:00.123Z``."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def track_event(kind: str, track_id: int, label: str, score: float, *, device_id: str,
                when: datetime | None = None) -> dict:
    """A ``new``/``update``/``end`` event for one track."""
    return {"type": kind, "track_id": int(track_id), "label": str(label), "score": float(score),
            "time": utc_now(when), "device_id": device_id}


def status_event(status: str, *, device_id: str, detail: str = "", when: datetime | None = None) -> dict:
    """A ``status`` event (one of :data:`STATUSES`) with a short detail: the camera lost or recovered,
    or no frame for ``source.stale_after_s`` (the outputs went idle) and frames flowing again."""
    if status not in STATUSES:
        raise EventError(f"status {status!r} is not one of: {', '.join(STATUSES)}")
    return {"type": "status", "status": status, "detail": detail[:MAX_STRING], "time": utc_now(when),
            "device_id": device_id}


def state_event(state: str, previous: str, *, device_id: str, when: datetime | None = None) -> dict:
    """A ``state`` event: the scene's decision moved from ``previous`` to ``state`` (both in STATES)."""
    for value in (state, previous):
        if value not in STATES:
            raise EventError(f"scene state {value!r} is not one of: {', '.join(STATES)}")
    return {"type": "state", "state": state, "previous": previous, "time": utc_now(when), "device_id": device_id}


def validate_event(event: dict) -> dict:
    """``event`` unchanged if it is a known type with its keys and only short scalar values; else EventError."""
    kind = event.get("type") if isinstance(event, dict) else None
    if kind not in REQUIRED:
        raise EventError(f"event type {kind!r} is not one of: {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED[kind] if k not in event]
    if missing:
        raise EventError(f"{kind} event lacks {', '.join(missing)}")
    for key, value in event.items():
        if not isinstance(key, str):
            raise EventError(f"{kind} event key {key!r} is not a string")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise EventError(f"{kind} event field {key!r} is a {type(value).__name__}: events carry scalars only, "
                             "never images or crops")
        if isinstance(value, float) and not math.isfinite(value):
            raise EventError(f"{kind} event field {key!r} is {value}: JSON has no NaN or infinity")
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise EventError(f"{kind} event field {key!r} is {len(value)} characters long (limit {MAX_STRING})")
    return event


class SummaryCounter:
    """Counts, per interval, the tracks seen by state; feed it every track event, ``poll()`` every frame.

    A track counts once per interval, by its latest label; a track still
    present when an interval ends counts in the next one too.
    """

    def __init__(self, interval_s: float, *, device_id: str, clock: Callable[[], float] = time.monotonic):
        if interval_s <= 0:
            raise EventError(f"summary interval_s must be positive, not {interval_s}")
        self.interval_s, self.device_id, self._clock = interval_s, device_id, clock
        self._active: dict[int, str] = {}  # track id -> state, tracks not ended
        self._seen: dict[int, str] = {}  # track id -> latest state this interval
        self._started = clock()

    def add(self, event: dict) -> None:
        """Take note of a track event (other types are ignored)."""
        if event.get("type") not in TRACK_TYPES:
            return
        state = STATE_OF_LABEL.get(event["label"])
        if state is not None:
            self._seen[event["track_id"]] = state
        if event["type"] == "end":
            self._active.pop(event["track_id"], None)
        elif state is not None:
            self._active[event["track_id"]] = state

    def poll(self, now: float | None = None, when: datetime | None = None) -> dict | None:
        """The summary event once ``interval_s`` has passed since the last one, else None."""
        now = self._clock() if now is None else now
        if now - self._started < self.interval_s:
            return None
        counts = dict.fromkeys(("masked", "unmasked", "incorrect"), 0)
        for state in self._seen.values():
            counts[state] += 1
        self._seen, self._started = dict(self._active), now
        return {"type": "summary", "interval_s": self.interval_s, **counts, "time": utc_now(when),
                "device_id": self.device_id}
