"""The ``none`` backend: no light, no buzzer; the indicator still keeps its state and timing.

Example::

    outputs = NoOutputs({}, active_high=True)
    outputs.devices   # {}
"""
from __future__ import annotations


class NoOutputs:
    """Drives nothing: for devices without a light or buzzer wired."""

    name = "none"

    def __init__(self, pins: dict[str, int] | None = None, active_high: bool = True):
        self.devices: dict = {}

    def close(self) -> None:
        pass
