"""The ``Indicator``: turns the runtime's decision for the scene into light and buzzer patterns.

States, most urgent first: ``unmasked`` (someone unmasked), ``incorrect``
(someone wears a mask incorrectly, nobody unmasked), ``masked`` (everyone
tracked is masked) and ``idle`` (nobody tracked). ``PATTERNS`` says what each
output does in each state. Call ``set_state`` every frame with the decision;
the timing rules use ``now`` (default: the injected clock):

* an alarm (``unmasked``/``incorrect``) stays on at least ``min_on_s``; it may
  escalate from incorrect to unmasked at once, anything else waits;
* after an alarm goes off, no alarm starts for ``cooldown_s``: a request for
  one shows ``idle`` (all off) meanwhile, never green.

Example::

    with Indicator({"backend": "gpiozero", "red_pin": 17, "green_pin": 27, "buzzer_pin": 22}) as indicator:
        indicator.set_state("unmasked")
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from ..errors import MaskwatchError
from .backends import open_backend
from .config import SignalConfig

log = logging.getLogger(__name__)

#: What each output does per state: on, off, blink (blink_s on, blink_s off) or beep (beep_s once per blink).
PATTERNS: dict[str, dict[str, str]] = {
    "unmasked": {"red": "on", "green": "off", "buzzer": "on"},
    "incorrect": {"red": "blink", "green": "off", "buzzer": "beep"},
    "masked": {"red": "off", "green": "on", "buzzer": "off"},
    "idle": {"red": "off", "green": "off", "buzzer": "off"},
}
STATES = tuple(PATTERNS)
ALARMS = ("unmasked", "incorrect")


class UnknownSignalState(MaskwatchError, ValueError):
    """``set_state`` was given something other than one of ``STATES``."""


class IndicatorClosed(MaskwatchError, RuntimeError):
    """``set_state`` on an indicator that was closed."""


class Indicator:
    """Lights and buzzer for the scene's state; ``close()`` (idempotent) switches everything off.

    ``pin_factory`` goes to gpiozero (tests pass ``MockFactory()``); ``clock``
    (seconds, monotonic) times ``min_on_s`` and ``cooldown_s`` when ``now`` is not given.
    """

    def __init__(self, config: SignalConfig | dict | None = None, *, pin_factory=None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = SignalConfig.parse(config)
        self._clock = clock
        self._outputs = open_backend(self.config, pin_factory)
        self.backend: str = self._outputs.name
        self.requested = self.shown = "idle"
        self._alarm_since: float | None = None
        self._alarm_ended: float | None = None
        self.closed = False

    @property
    def devices(self) -> dict:
        """The backend's outputs, role (red, green, buzzer) -> device (a gpiozero LED/Buzzer on gpiozero)."""
        return dict(self._outputs.devices)

    def set_state(self, state: str, now: float | None = None) -> str:
        """Ask for ``state``; returns the state shown after the timing rules."""
        if state not in PATTERNS:
            raise UnknownSignalState(f"signal state {state!r} is not one of: {', '.join(STATES)}")
        if self.closed:
            raise IndicatorClosed("set_state on a closed Indicator")
        self.requested = state
        now = self._clock() if now is None else now
        shown = self._decide(state, now)
        if shown != self.shown:
            if shown in ALARMS and self.shown not in ALARMS:
                self._alarm_since = now
            elif shown not in ALARMS and self.shown in ALARMS:
                self._alarm_ended = now
            log.debug("signal %s -> %s (requested %s)", self.shown, shown, state)
            self.shown = shown
            self._apply(PATTERNS[shown])
        return shown

    def update(self, now: float | None = None) -> str:
        """Re-apply the last request: lets a held alarm end without a new decision."""
        return self.set_state(self.requested, now)

    def _decide(self, requested: str, now: float) -> str:
        if self.shown in ALARMS:
            if requested == self.shown or requested == "unmasked":
                return requested
            held = now - self._alarm_since < self.config.min_on_s
            return self.shown if held else requested
        cooling = self._alarm_ended is not None and now - self._alarm_ended < self.config.cooldown_s
        return "idle" if requested in ALARMS and cooling else requested

    def _apply(self, pattern: dict[str, str]) -> None:
        blink, beep = self.config.blink_s, self.config.beep_s
        for role, device in self._outputs.devices.items():
            action = pattern[role]
            if action == "on":
                device.on()
            elif action == "off":
                device.off()
            elif action == "blink":
                device.blink(on_time=blink, off_time=blink)
            else:  # beep: one short beep per blink period
                device.blink(on_time=beep, off_time=2 * blink - beep)

    def close(self) -> None:
        """Switch every output off and release the pins; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            for device in self._outputs.devices.values():
                device.off()
        finally:
            self._outputs.close()
            self.shown = "idle"

    def __enter__(self) -> "Indicator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Indicator {self.backend} {self.shown}{' closed' if self.closed else ''}>"
