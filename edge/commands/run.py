"""``maskwatch run``: camera -> detect -> classify -> track -> GPIO light/buzzer and events."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import backends, bounded, config_options, load


def configure(parser: argparse.ArgumentParser) -> None:
    from ..gpio.config import BACKEND_NAMES
    from ..tiling import TILING_MODES

    parser.description = "Run the pipeline. With no --source and no config, runs on the built-in sample clip."
    config_options(parser)
    parser.add_argument("--source", default=None,
                        help="camera index or /dev/videoN, rtsp:// or http:// URL, video file, images, picamera2, sample")
    parser.add_argument("--backend", default=None, choices=backends(), help="runtime for both models")
    parser.add_argument("--gpio", default=None, choices=BACKEND_NAMES, help="light/buzzer backend")
    parser.add_argument("--tiling", default=None, choices=TILING_MODES,
                        help="look closer at large frames: off, grid (every frame, every tile) or auto (tiles only for "
                             "frames larger than one tile); detector.tiling.* in the config sets the rest "
                             "(default: the config's, auto)")
    parser.add_argument("--events", type=Path, default=None, help="JSON Lines event log (rotated by size)")
    parser.add_argument("--mqtt", type=broker, default=None, metavar="HOST[:PORT]",
                        help="publish events to this MQTT broker (IPv6: [ADDRESS]:PORT)")
    parser.add_argument("--preview", default=None, help="annotated video file, or http://127.0.0.1:PORT for MJPEG")
    parser.add_argument("--print-events", action="store_true", help="print events as JSON lines")
    parser.add_argument("--max-frames", type=bounded(int, 0, 10 ** 12, "--max-frames"), default=None,
                        help="stop after this many frames (0: build everything, process none)")
    parser.add_argument("--max-wait", type=bounded(float, 0.1, 86400, "--max-wait"), default=None, metavar="SECONDS",
                        help="give up when a camera or stream has sent no frame for this long, at start or after a "
                             "loss (default: retry forever, as a service should)")
    parser.set_defaults(handler=run)


def broker(text: str) -> dict:
    """argparse type: ``HOST``, ``HOST:PORT``, ``[IPV6]`` or ``[IPV6]:PORT`` as the mqtt config's host and port."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"{text!r}: write an IPv6 broker as [ADDRESS] or [ADDRESS]:PORT")
        port = rest[1:] if rest else None
    else:
        host, sep, port = text.partition(":")
        if sep and ":" in port:
            raise argparse.ArgumentTypeError(f"{text!r}: write an IPv6 broker as [ADDRESS]:PORT")
        port = port if sep else None
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r}: no broker host")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r}: port {port!r} is not a number from 1 to 65535")
    return {"host": host, **({"port": int(port)} if port is not None else {})}


def run_config(args: argparse.Namespace):
    """The config ``run`` uses: ``--config``, then ``--set``, then the flags."""
    # each flag sets only the keys it names: the rest of its section (TLS, credentials, rotation) stays as configured
    mqtt = {f"events.mqtt.{key}": value for key, value in (args.mqtt or {}).items()}
    return load(args, **{"source.spec": args.source, "detector.backend": args.backend,
                         "classifier.backend": args.backend, "signal.backend": args.gpio,
                         "detector.tiling.mode": args.tiling,
                         "events.jsonl.path": str(args.events) if args.events else None, **mqtt,
                         "preview.target": args.preview, "source.max_wait_s": args.max_wait})


def run(args: argparse.Namespace) -> int:
    from ..app import run as run_pipeline

    config = run_config(args)
    stats = run_pipeline(config, max_frames=args.max_frames, print_events=args.print_events)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(stats.events.items())) or "none"
    print(f"maskwatch: {stats.frames} frames, {stats.faces} faces, {stats.classified} classified, "
          f"{stats.fps:.1f} fps; events: {counts}", file=sys.stderr)
    target = config.preview.target
    if target and not target.startswith("http://"):
        print(f"maskwatch: preview written to {Path(target).resolve()}", file=sys.stderr)
    return 0
