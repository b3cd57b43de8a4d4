"""Events as JSON lines on standard output (``maskwatch run --print-events``)."""
from __future__ import annotations

import json
import sys

from .sink import Sink


class StdoutSink(Sink):
    name = "stdout"

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def write(self, event: dict) -> None:
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()
