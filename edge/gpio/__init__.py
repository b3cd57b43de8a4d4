"""Light and buzzer for the runtime's decision: red/buzzer while unmasked, green while masked.

One ``Indicator`` drives the outputs through a backend chosen by name
(``auto``, ``gpiozero``, ``jetson``, ``mock``, ``none``; see ``backends``).
Hardware libraries are imported only when their backend is chosen.

Example::

    with Indicator(SignalConfig(backend="mock", red_pin=17, green_pin=27, buzzer_pin=22)) as indicator:
        indicator.set_state("masked")
"""
from .backends import BACKENDS, open_backend
from .config import SignalConfig
from .indicator import PATTERNS, Indicator, IndicatorClosed, UnknownSignalState

__all__ = ["BACKENDS", "PATTERNS", "Indicator", "IndicatorClosed", "SignalConfig",
           "UnknownSignalState", "open_backend"]
