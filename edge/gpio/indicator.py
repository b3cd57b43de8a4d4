"""The ``Indicator``: shows the scene's state on the lights and buzzer.

``PATTERNS`` says what each output does in each state (the states are
:data:`maskwatch.edge.decision.STATES`). The indicator has no timing of its own:
``set_state`` shows what it is told at once. When a state may start or end (an
alarm's minimum on time, the cool-down after it) is the decision's job
(:class:`maskwatch.edge.decision.Decision`); the pipeline calls ``set_state``
with each state the decision publishes.

Example::

    with Indicator({"backend": "gpiozero", "red_pin": 17, "green_pin": 27, "buzzer_pin": 22}) as indicator:
        indicator.set_state("unmasked")
"""
from __future__ import annotations

import logging

from ..decision import STATES
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


class UnknownSignalState(MaskwatchError, ValueError):
    """``set_state`` was given something other than one of ``STATES``."""


class IndicatorClosed(MaskwatchError, RuntimeError):
    """``set_state`` on an indicator that was closed."""


class Indicator:
    """Lights and buzzer for the scene's state; ``close()`` (idempotent) switches everything off.

    ``pin_factory`` goes to gpiozero (tests pass ``MockFactory()``).
    """

    def __init__(self, config: SignalConfig | dict | None = None, *, pin_factory=None):
        self.config = SignalConfig.parse(config)
        self._outputs = open_backend(self.config, pin_factory)
        self.backend: str = self._outputs.name
        self.shown = "idle"
        self.closed = False

    @property
    def devices(self) -> dict:
        """The backend's outputs, role (red, green, buzzer) -> device (a gpiozero LED/Buzzer on gpiozero)."""
        return dict(self._outputs.devices)

    def set_state(self, state: str) -> str:
        """Show ``state`` (pins are written only when it differs from what is shown); returns it."""
        if state not in PATTERNS:
            raise UnknownSignalState(f"signal state {state!r} is not one of: {', '.join(STATES)}")
        if self.closed:
            raise IndicatorClosed("set_state on a closed Indicator")
        if state != self.shown:
            log.debug("signal %s -> %s", self.shown, state)
            self.shown = state
            self._apply(PATTERNS[state])
        return state

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
