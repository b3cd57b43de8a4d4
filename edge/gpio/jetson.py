"""Jetson backend: NVIDIA's ``Jetson.GPIO`` (imported only when this backend is chosen), BCM numbering.

Wiring as on a Raspberry Pi: the Jetson 40-pin header follows the Pi's layout,
and BCM mode maps the same numbers. Jetson pins give little current (a few mA
at 3.3 V): drive the buzzer, and bright lights, through a transistor or relay.
Blinking runs on one small thread per blinking output.

Example::

    outputs = JetsonOutputs({"red": 17, "green": 27}, active_high=True)
    outputs.devices["red"].blink(0.5, 0.5)
"""
from __future__ import annotations

import importlib
import threading

from ..errors import RuntimeUnavailable


def jetson_gpio():
    """The ``Jetson.GPIO`` module, or a one-line RuntimeUnavailable."""
    try:
        return importlib.import_module("Jetson.GPIO")
    except ImportError:
        raise RuntimeUnavailable("Jetson.GPIO is not installed: pip install Jetson.GPIO (JetPack ships it)") from None
    except RuntimeError as exc:  # imported on something that is not a Jetson, or without GPIO permissions
        raise RuntimeUnavailable(f"Jetson.GPIO cannot run here: {exc}") from None


class JetsonOutput:
    """One output pin with gpiozero's on/off/blink/close; ``active_high=False`` inverts the level."""

    def __init__(self, gpio, pin: int, active_high: bool):
        self._gpio, self.pin, self._on = gpio, pin, gpio.HIGH if active_high else gpio.LOW
        self._off = gpio.LOW if active_high else gpio.HIGH
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.closed = False
        gpio.setup(pin, gpio.OUT, initial=self._off)

    def on(self) -> None:
        self._stop_blink()
        self._gpio.output(self.pin, self._on)

    def off(self) -> None:
        self._stop_blink()
        self._gpio.output(self.pin, self._off)

    def blink(self, on_time: float = 1, off_time: float = 1) -> None:
        self._stop_blink()
        self._stop = stop = threading.Event()

        def run():
            while True:
                self._gpio.output(self.pin, self._on)
                if stop.wait(on_time):
                    break
                self._gpio.output(self.pin, self._off)
                if stop.wait(off_time):
                    break

        self._thread = threading.Thread(target=run, name=f"blink-{self.pin}", daemon=True)
        self._thread.start()

    def _stop_blink(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        if not self.closed:
            self.off()
            self._gpio.cleanup(self.pin)
            self.closed = True


class JetsonOutputs:
    """One ``JetsonOutput`` per wired role."""

    name = "jetson"

    def __init__(self, pins: dict[str, int], active_high: bool = True):
        gpio = jetson_gpio()
        gpio.setwarnings(False)
        gpio.setmode(gpio.BCM)
        self.devices = {role: JetsonOutput(gpio, pin, active_high) for role, pin in pins.items()}

    def close(self) -> None:
        for device in self.devices.values():
            device.close()
