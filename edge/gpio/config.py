"""The light/buzzer settings: which backend drives which BCM pins, and how a warning blinks.

The alarm's timing (how long it lasts, the cool-down) is the ``[decision]`` section's.

Example::

    config = SignalConfig.parse({"backend": "gpiozero", "red_pin": 17, "green_pin": 27, "buzzer_pin": 22})
    config.pins   # {"red": 17, "green": 27, "buzzer": 22}
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from ..errors import ConfigError, one_line
from ..registry import Entry, Registry

#: backend name -> its class (imported when chosen); ``auto`` is not a backend but a choice among them.
BACKENDS = Registry("signal backend", {
    "gpiozero": Entry("maskwatch.edge.gpio.gpiozero_backend:GpiozeroOutputs"),
    "jetson": Entry("maskwatch.edge.gpio.jetson:JetsonOutputs"),
    "mock": Entry("maskwatch.edge.gpio.gpiozero_backend:MockOutputs"),
    "none": Entry("maskwatch.edge.gpio.none:NoOutputs"),
}, choices_before=("auto",))
#: The backends that drive real pins, in the order ``auto`` tries them.
HARDWARE_BACKENDS = ("gpiozero", "jetson")
#: Every backend name a config or ``--gpio`` may give.
BACKEND_NAMES = BACKENDS.choices


class SignalConfig(BaseModel):
    """Which outputs are wired where, and how the incorrect-mask warning blinks and beeps (how long
    an alarm lasts is the ``[decision]`` section's)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="signal")

    backend: Literal[BACKEND_NAMES] = Field(
        "auto", title="backend",
        description="auto: gpiozero with a real pin factory, else Jetson.GPIO, else none; "
                    "mock: gpiozero's MockFactory (logs each pin's history on close)")
    red_pin: StrictInt | None = Field(None, ge=0, le=27, title="red light pin",
                                description="BCM number of the red light; on while unmasked, blinks while incorrect")
    green_pin: StrictInt | None = Field(None, ge=0, le=27, title="green light pin",
                                  description="BCM number of the green light; on while everyone tracked is masked")
    buzzer_pin: StrictInt | None = Field(None, ge=0, le=27, title="buzzer pin",
                                   description="BCM number of the buzzer; on while unmasked, "
                                               "short beeps while incorrect")
    active_high: bool = Field(True, title="active high",
                              description="true: a high pin switches an output on; false for active-low wiring "
                                          "(output between 3.3 V and the pin, or a low-triggered relay board)")
    blink_s: float = Field(0.5, gt=0, title="blink half-period",
                           description="while incorrect, the red light is on this long, then off this long")
    beep_s: float = Field(0.1, gt=0, title="beep length",
                          description="while incorrect, the buzzer beeps this long once per blink (2 * blink_s)")

    @model_validator(mode="after")
    def _check(self):
        pins = {k: v for k, v in (("red_pin", self.red_pin), ("green_pin", self.green_pin),
                                  ("buzzer_pin", self.buzzer_pin)) if v is not None}
        if len(set(pins.values())) < len(pins):
            raise ValueError(f"two outputs share one pin: {pins}")
        if self.backend in HARDWARE_BACKENDS and not pins:
            raise ValueError(f"backend {self.backend} drives no output: set red_pin, green_pin and/or buzzer_pin "
                             "(BCM numbers, e.g. red_pin=17 green_pin=27 buzzer_pin=22; wiring in docs/deployment.md)")
        if self.beep_s >= 2 * self.blink_s:
            raise ValueError(f"beep_s ({self.beep_s}) must be shorter than one blink period "
                             f"(2 * blink_s = {2 * self.blink_s})")
        return self

    @property
    def pins(self) -> dict[str, int]:
        """Wired outputs only: role (red, green, buzzer) -> BCM pin."""
        roles = {"red": self.red_pin, "green": self.green_pin, "buzzer": self.buzzer_pin}
        return {role: pin for role, pin in roles.items() if pin is not None}

    @classmethod
    def parse(cls, data: "SignalConfig | dict | None") -> "SignalConfig":
        """A config from a dict (or None: defaults); a bad key or value is a one-line ConfigError."""
        if isinstance(data, cls):
            return data
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise ConfigError(f"signal config: {one_line(exc)}") from None
