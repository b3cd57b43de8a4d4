"""``maskwatch service``: install, remove or show the systemd service (:mod:`maskwatch.edge.deploy.service`)."""
from __future__ import annotations

import argparse
from pathlib import Path


def configure(service: argparse.ArgumentParser) -> None:
    from ..deploy.service import unit_name
    from ..deploy.unit import CONFIG, DEVICES, GROUPS, MEMORY_MAX, STATE_DIR, UNIT_DIR, UNIT_NAME, USER, WATCHDOG_SEC

    service.description = ("The systemd unit: runs `maskwatch run --config PATH` on boot as an "
                          "unprivileged user, with a watchdog and restart on failure.")
    service.add_argument("action", choices=["install", "uninstall", "status"])
    service.add_argument("--user", default=USER, help="account the service runs as (default: %(default)s)")
    service.add_argument("--config", type=Path, default=CONFIG, help="config file the service reads (default: %(default)s)")
    service.add_argument("--unit-dir", type=Path, default=UNIT_DIR, help="where the unit goes (default: %(default)s)")
    service.add_argument("--exec", dest="exec_path", type=Path, default=None,
                         help="maskwatch executable (default: the one beside this Python)")
    service.add_argument("--models-dir", type=Path, default=None,
                         help="MASKWATCH_MODELS for the service (default: the models inside the installed package)")
    service.add_argument("--state-dir", type=Path, default=STATE_DIR,
                         help="the one writable folder: events, spool (default: %(default)s)")
    service.add_argument("--groups", nargs="+", default=list(GROUPS), help="supplementary groups (default: %(default)s)")
    service.add_argument("--watchdog-sec", type=int, default=WATCHDOG_SEC, help="WatchdogSec (default: %(default)s)")
    service.add_argument("--memory-max", default=MEMORY_MAX,
                         help="MemoryMax: the service is stopped (and restarted) past it; 800M, 2G, 50%%, infinity "
                              "(default: %(default)s)")
    service.add_argument("--devices", nargs="*", default=list(DEVICES),
                         help="DeviceAllow device groups from /proc/devices (globs allowed) or /dev paths; every other "
                              "device is refused; with no value: no device list (default: %(default)s)")
    service.add_argument("--name", type=unit_name, default=UNIT_NAME, help="unit name (default: %(default)s)")
    service.add_argument("--dry-run", action="store_true", help="print the unit and the systemctl commands; change nothing")
    service.add_argument("--no-start", action="store_true", help="write or remove the unit only; run no systemctl command")
    service.set_defaults(handler=main_args)


def main_args(args: argparse.Namespace) -> int:
    from ..deploy.service import default_exec_path, install, status, uninstall
    from ..deploy.unit import UnitSettings

    if args.action == "status":
        return status(args.name)
    start = not args.no_start
    if args.action == "uninstall":
        uninstall(args.unit_dir, args.name, dry_run=args.dry_run, start=start)
        return 0
    settings = UnitSettings(exec_path=(args.exec_path or default_exec_path()).absolute(), config=args.config.absolute(),
                            models_dir=args.models_dir.absolute() if args.models_dir else None,
                            state_dir=args.state_dir.absolute(), user=args.user,
                            groups=tuple(args.groups), watchdog_sec=args.watchdog_sec,
                            memory_max=args.memory_max, devices=tuple(args.devices))
    install(settings, args.unit_dir, args.name, dry_run=args.dry_run, start=start)
    return 0
