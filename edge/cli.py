"""The ``maskwatch`` command: one entry point, one subcommand per job.

Subcommands are registered by name with a one-line help; a subcommand's module is imported only
when that subcommand runs, so ``maskwatch --help`` and ``maskwatch run`` on a device never import
the workstation toolchain (:mod:`maskwatch.convert`) or TensorFlow. Each module has
``configure(parser)``, which adds the subcommand's arguments and sets its ``handler``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import MaskwatchError

#: subcommand -> (module with ``configure(parser)``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("maskwatch.edge.commands.run", "camera -> detect -> classify -> track -> GPIO light/buzzer and events"),
    "doctor": ("maskwatch.edge.commands.doctor", "what this device has: runtimes, delegates, cameras, GPIO, models"),
    "detect": ("maskwatch.edge.commands.detect", "detect faces in images and write annotated pictures"),
    "classify": ("maskwatch.edge.commands.classify",
                 "classify face crops as with_mask / without_mask / mask_weared_incorrect"),
    "predict": ("maskwatch.edge.commands.predict", "detector + classifier on images, one JSON line per image"),
    "eval": ("maskwatch.benchmarks.accuracy.command", "accuracy on annotated scenes (--voc) or crop folders (--crops)"),
    "bench": ("maskwatch.benchmarks.speed.command", "latency per stage and FPS for every backend, precision and input size"),
    "bundle": ("maskwatch.convert.bundle.command", "build one offline-installable archive for a device"),
    "update": ("maskwatch.edge.commands.update",
               "install a signed bundle archive, its signature checked before anything in it runs"),
    "service": ("maskwatch.edge.commands.service",
                "install, remove or show the systemd service that runs maskwatch on boot"),
    "convert": ("maskwatch.convert.cli", "train and convert models to TFLite and ONNX (needs maskwatch[convert])"),
}


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: every subcommand by name, only the chosen one configured in full."""
    argv = sys.argv[1:] if argv is None else argv
    chosen = _chosen(argv)
    # -v works before and after the subcommand; SUPPRESS keeps a later default from undoing an earlier -v
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    parser = argparse.ArgumentParser(prog="maskwatch", description="Face-mask detection for edge devices.")
    parser.add_argument("--version", action="version", version=f"maskwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        if name == chosen:
            importlib.import_module(module).configure(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except MaskwatchError as exc:
        print(f"maskwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
