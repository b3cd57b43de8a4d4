"""The scene decision: what the runtime says about the whole scene, and when it may say it.

This module owns the scene states, the rule from face labels to a state, and the
timing rules, as a small pure state machine. Nothing here touches a pin, a clock
or a broker: the pipeline asks, and every output (the lights and buzzer, the
MQTT ``state`` and ``unmasked`` topics, the preview) follows the ``state`` event
it publishes when the decision changes.

States, most urgent first: ``unmasked`` (someone unmasked), ``incorrect``
(someone wears a mask incorrectly, nobody unmasked), ``masked`` (everyone with a
label is masked) and ``idle`` (nobody with a label; also while no frame arrives).
The timing rules, on the ``now`` the caller passes (seconds, monotonic):

* an alarm (``unmasked`` or ``incorrect``) lasts at least ``min_on_s``; it may
  escalate from incorrect to unmasked at once, any other change waits;
* after an alarm ends, no alarm starts for ``cooldown_s``: a request for one
  gives ``idle`` (all off) meanwhile, never ``masked`` (green).

``tick(now)`` re-applies the last request, so a held alarm ends on time when no
new request comes (a stalled camera, a reconnect back-off).

Example::

    decision = Decision.from_config(DecisionConfig(min_on_s=2.0, cooldown_s=5.0))
    change = decision.request(scene_state(track.label for track in tracks), now=12.5)
    if change: print(change.previous, "->", change.state)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field

from .errors import MaskwatchError

#: The scene states, most urgent first.
STATES = ("unmasked", "incorrect", "masked", "idle")
#: The states that sound the alarm.
ALARMS = ("unmasked", "incorrect")
#: Face label -> the state it asks for.
LABEL_STATE = {"without_mask": "unmasked", "mask_weared_incorrect": "incorrect", "with_mask": "masked"}


class UnknownState(MaskwatchError, ValueError):
    """A state other than one of :data:`STATES`."""


class DecisionConfig(BaseModel):
    """The ``[decision]`` section: the alarm's timing, which every output follows."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="decision")

    min_on_s: float = Field(2.0, ge=0, title="minimum on time",
                            description="an alarm (unmasked or incorrect) stays on at least this many seconds")
    cooldown_s: float = Field(5.0, ge=0, title="cooldown",
                              description="after an alarm goes off, no alarm starts again for this many seconds")


def scene_state(labels: Iterable[str | None]) -> str:
    """The most urgent state any of ``labels`` asks for (None and unknown labels ask nothing), else ``idle``."""
    asked = {LABEL_STATE.get(label) for label in labels}
    return next((state for state in STATES if state in asked), "idle")


@dataclass(frozen=True)
class StateChange:
    """The decision moved from ``previous`` to ``state`` at ``now``; ``requested`` is what was asked."""

    state: str
    previous: str
    requested: str
    now: float


class Decision:
    """The hold and cool-down state machine; see the module docstring."""

    def __init__(self, min_on_s: float, cooldown_s: float):
        if min_on_s < 0 or cooldown_s < 0:
            raise ValueError(f"min_on_s ({min_on_s}) and cooldown_s ({cooldown_s}) must not be negative")
        self.min_on_s, self.cooldown_s = min_on_s, cooldown_s
        self.requested = self.state = "idle"
        self._alarm_since: float | None = None
        self._alarm_ended: float | None = None

    @classmethod
    def from_config(cls, config: DecisionConfig) -> "Decision":
        """From the ``[decision]`` config section."""
        return cls(config.min_on_s, config.cooldown_s)

    def request(self, state: str, now: float) -> StateChange | None:
        """Ask for ``state`` at ``now``; the change, when the decision moved, else None."""
        if state not in STATES:
            raise UnknownState(f"scene state {state!r} is not one of: {', '.join(STATES)}")
        self.requested = state
        decided = self._decide(state, now)
        if decided == self.state:
            return None
        if decided in ALARMS and self.state not in ALARMS:
            self._alarm_since = now
        elif decided not in ALARMS and self.state in ALARMS:
            self._alarm_ended = now
        change = StateChange(decided, self.state, state, now)
        self.state = decided
        return change

    def tick(self, now: float) -> StateChange | None:
        """Re-apply the last request at ``now``: a held alarm ends, a cool-down lets a waiting alarm start."""
        return self.request(self.requested, now)

    def _decide(self, requested: str, now: float) -> str:
        if self.state in ALARMS:
            if requested == self.state or requested == "unmasked":
                return requested
            held = now - self._alarm_since < self.min_on_s
            return self.state if held else requested
        cooling = self._alarm_ended is not None and now - self._alarm_ended < self.cooldown_s
        return "idle" if requested in ALARMS and cooling else requested

    def __repr__(self) -> str:
        return f"<Decision {self.state} (requested {self.requested})>"
