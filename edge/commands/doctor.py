"""``maskwatch doctor``: what this device has (runtimes, delegates, cameras, GPIO, models)."""
from __future__ import annotations

import argparse

from .options import config_options, load


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Report runtimes, delegates, cameras, GPIO and models; exit 1 when the config needs a missing one."
    config_options(parser)
    parser.set_defaults(handler=doctor)


def doctor(args: argparse.Namespace) -> int:
    from ..doctor import report

    text, code = report(load(args))
    print(text)
    return code
