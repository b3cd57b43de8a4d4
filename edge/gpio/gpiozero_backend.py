"""gpiozero backend (Raspberry Pi): an ``LED`` per light and a ``Buzzer``, on an injected pin factory.

Wiring (BCM numbers, active high): pin -> 330 ohm -> LED anode, cathode -> GND;
an active buzzer through an NPN transistor or a 3.3 V buzzer module. Without a
``pin_factory`` gpiozero picks its own: ``GPIOZERO_PIN_FACTORY`` (``mock``,
``lgpio``, ...) or the first that loads. The ``mock`` backend is gpiozero's
``MockFactory``: nothing is driven, and each pin's state history is logged on close.

Example::

    outputs = GpiozeroOutputs({"red": 17, "buzzer": 22}, active_high=True)
    outputs.devices["buzzer"].blink(0.1, 0.9)
"""
from __future__ import annotations

import logging
import warnings

from ..errors import ConfigError, RuntimeUnavailable

log = logging.getLogger(__name__)


class GpiozeroOutputs:
    """LEDs and a buzzer on gpiozero; ``pin_factory=None`` lets gpiozero choose (honours GPIOZERO_PIN_FACTORY)."""

    def __init__(self, pins: dict[str, int], active_high: bool = True, pin_factory=None):
        try:
            from gpiozero import LED, Buzzer
            from gpiozero.exc import BadPinFactory, GPIOZeroError
        except ImportError:
            raise RuntimeUnavailable("gpiozero is not installed: pip install gpiozero") from None
        self.devices, self.pin_factory = {}, pin_factory
        try:
            with warnings.catch_warnings():  # gpiozero warns per factory it falls back from
                warnings.simplefilter("ignore")
                for role, pin in pins.items():
                    cls = Buzzer if role == "buzzer" else LED
                    self.devices[role] = cls(pin, active_high=active_high, initial_value=False,
                                             pin_factory=pin_factory)
        except BadPinFactory as exc:
            self.close()
            raise RuntimeUnavailable(f"gpiozero could not load a pin factory ({exc}); "
                                     "on a Pi install lgpio, elsewhere use backend mock") from None
        except GPIOZeroError as exc:  # a pin that does not exist or is in use: fix the config, do not fall back
            self.close()
            raise ConfigError(f"signal pins {pins}: {exc}") from None
        first = next(iter(self.devices.values()), None)
        self.pin_factory = first.pin_factory if first else pin_factory
        self.name = f"gpiozero ({type(self.pin_factory).__name__ if self.pin_factory else 'no pins'})"

    def close(self) -> None:
        """Close every device (idempotent); a mock factory's pin histories are logged first."""
        if _is_mock(self.pin_factory):
            for role, device in self.devices.items():
                if not device.closed:
                    log.info("mock pin %s (%s): %s", device.pin, role, pin_history(device.pin))
        for device in self.devices.values():
            device.close()


class MockOutputs(GpiozeroOutputs):
    """gpiozero on its ``MockFactory`` (a fresh one unless injected): for tests and dry runs."""

    def __init__(self, pins: dict[str, int], active_high: bool = True, pin_factory=None):
        if pin_factory is None:
            from gpiozero.pins.mock import MockFactory

            pin_factory = MockFactory()
        super().__init__(pins, active_high, pin_factory)
        self.name = "mock"


def _is_mock(factory) -> bool:
    try:
        from gpiozero.pins.mock import MockFactory
    except ImportError:
        return False
    return isinstance(factory, MockFactory)


def pin_history(pin) -> str:
    """A mock pin's recorded levels as ``0@0.000s 1@0.512s ...`` (seconds since its history began)."""
    t, parts = 0.0, []
    for change in pin.states:
        t += change.timestamp
        parts.append(f"{int(change.state)}@{t:.3f}s")
    return " ".join(parts)
