"""Signal backends, chosen by name; each is one module, its hardware library imported only when chosen.

A backend opens one output per wired pin (roles ``red``, ``green``, ``buzzer``).
Every output has gpiozero's ``on()``, ``off()``, ``blink(on_time, off_time)``
and ``close()``; a backend object has ``devices`` (role -> output), ``name``
and ``close()``.

Example::

    outputs = open_backend(SignalConfig(backend="mock", red_pin=17))
    outputs.devices["red"].on()
"""
from __future__ import annotations

import logging

from ..errors import ConfigError, RuntimeUnavailable
from .config import BACKENDS, HARDWARE_BACKENDS, SignalConfig

log = logging.getLogger(__name__)


def backend_class(name: str):
    """The class of backend ``name``; an unknown name is a one-line ConfigError."""
    return BACKENDS.load(name)


def open_backend(config: SignalConfig, pin_factory=None):
    """Open the configured backend (``pin_factory`` goes to gpiozero and mock)."""
    pins, active_high = config.pins, config.active_high
    if config.backend != "auto":
        factory = {"pin_factory": pin_factory} if config.backend in ("gpiozero", "mock") else {}
        if pin_factory is not None and not factory:
            raise ConfigError(f"signal backend {config.backend}: pin_factory applies to gpiozero and mock only")
        outputs = backend_class(config.backend)(pins, active_high, **factory)
        log.info("signal backend %s: %s", outputs.name, pins or "no pins wired")
        return outputs
    if not pins:
        log.info("signal backend auto chose none: no pins configured")
        return backend_class("none")(pins, active_high)
    if pin_factory is not None:
        outputs = backend_class("gpiozero")(pins, active_high, pin_factory=pin_factory)
    else:
        outputs = None
        for name in HARDWARE_BACKENDS:
            try:
                outputs = backend_class(name)(pins, active_high)
                break
            except RuntimeUnavailable as exc:
                log.info("signal backend auto: %s unavailable (%s)", name, exc)
        outputs = outputs or backend_class("none")(pins, active_high)
    log.info("signal backend auto chose %s: %s", outputs.name, pins)
    return outputs
