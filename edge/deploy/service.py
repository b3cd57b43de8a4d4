"""The systemd unit that runs ``maskwatch run`` on the pole, and ``maskwatch service install|uninstall|status``.

The unit starts on boot, runs as an unprivileged user in the ``gpio`` and ``video``
groups, tells systemd when it is ready (``Type=notify``) and pings its watchdog
once per frame (``edge/deploy/watchdog.py``), so a hung camera or delegate gets
the service restarted; it restarts on failure with a back-off and gives up after
``StartLimitBurst`` failures in ``StartLimitIntervalSec``. The file system is
read-only to it except the state folder (events, spool), and it has its own /tmp.

Example::

    maskwatch service install --user maskwatch --config /etc/maskwatch/maskwatch.toml
    maskwatch service install --dry-run            # show the unit and the systemctl commands
    maskwatch service status
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import DeployError

UNIT_NAME = "maskwatch.service"
UNIT_DIR = Path("/etc/systemd/system")
PREFIX = Path("/opt/maskwatch")                          #: venv/ and models/ of an installed bundle
CONFIG = Path("/etc/maskwatch/maskwatch.toml")
STATE_DIR = Path("/var/lib/maskwatch")                   #: events, MQTT spool: the only writable place
USER = "maskwatch"
GROUPS = ("gpio", "video")                               #: GPIO pins (gpiozero/lgpio, Jetson.GPIO) and cameras
WATCHDOG_SEC = 30


@dataclass
class UnitSettings:
    """What varies between installs; everything else in the unit is fixed policy."""

    exec_path: Path = PREFIX / "venv" / "bin" / "maskwatch"
    config: Path = CONFIG
    models_dir: Path | None = PREFIX / "models"          #: MASKWATCH_MODELS; None: the models inside the wheel
    state_dir: Path = STATE_DIR
    user: str = USER
    groups: tuple[str, ...] = field(default=GROUPS)
    watchdog_sec: int = WATCHDOG_SEC
    restart_sec: int = 5
    start_limit_burst: int = 5
    start_limit_interval_sec: int = 600


def _quote(value) -> str:
    """A path for an ``ExecStart=``/``Environment=`` line: quoted when it holds a space."""
    text = str(value)
    if any(c in text for c in "\"\\\n"):
        raise DeployError(f"{text!r}: quotes, backslashes and newlines are not supported in unit paths")
    return f'"{text}"' if " " in text else text


def render_unit(s: UnitSettings | None = None) -> str:
    """The unit file's text."""
    s = s or UnitSettings()
    if s.watchdog_sec < 2:
        raise DeployError(f"watchdog_sec {s.watchdog_sec}: at least 2 seconds (the pipeline pings every half period)")
    env = ["PYTHONUNBUFFERED=1"]
    if s.models_dir is not None:
        env.append(f"MASKWATCH_MODELS={s.models_dir}")
    environment = "\n".join(f"Environment={_quote(e)}" for e in env)
    # StateDirectory= creates the folder owned by the service user before the sandbox is set up;
    # it only takes names under /var/lib.
    under_var_lib = s.state_dir.parent == Path("/var/lib")
    state_line = f"StateDirectory={s.state_dir.name}\nStateDirectoryMode=0750\n" if under_var_lib else ""
    return f"""\
# maskwatch: face-mask detection on this pole. Written by `maskwatch service install`.
[Unit]
Description=maskwatch face-mask detection (camera -> GPIO light/buzzer and events)
Wants=network-online.target
After=network-online.target
# Give up after {s.start_limit_burst} failed starts in {s.start_limit_interval_sec} s (then: systemctl reset-failed maskwatch).
StartLimitIntervalSec={s.start_limit_interval_sec}
StartLimitBurst={s.start_limit_burst}

[Service]
Type=notify
NotifyAccess=main
ExecStart={_quote(s.exec_path)} run --config {_quote(s.config)}
{environment}
User={s.user}
Group={s.user}
SupplementaryGroups={" ".join(s.groups)}
WorkingDirectory={_quote(s.state_dir)}
# READY=1 comes once the models are loaded; WATCHDOG=1 once per frame, at most every {s.watchdog_sec / 2:g} s.
TimeoutStartSec=180
WatchdogSec={s.watchdog_sec}
Restart=on-failure
RestartSec={s.restart_sec}
# SIGTERM: lights and buzzer off, events flushed, exit 0.
KillSignal=SIGTERM
TimeoutStopSec=20
{state_line}ReadWritePaths={_quote(s.state_dir)}
# Hardening: read-only system, no privilege gain. Devices stay visible (camera, /dev/gpiochip*).
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
UMask=0027

[Install]
WantedBy=multi-user.target
"""


def _systemctl() -> str:
    path = shutil.which("systemctl")
    if path is None:
        raise DeployError("systemctl not found: this system does not run systemd "
                          "(use --dry-run to see the unit, or --no-start to only write it)")
    return path


def _run(command: list[str]) -> None:
    print("+ " + " ".join(command), file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise DeployError(f"{' '.join(command)} failed (exit {done.returncode}): {detail[-1] if detail else 'no output'}")


def unit_name(text: str) -> str:
    """argparse type: a plain systemd service name (``maskwatch.service``, ``maskwatch-gate2.service``),
    never a path, so --name cannot write outside the unit folder."""
    import argparse
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\.service", text):
        raise argparse.ArgumentTypeError(f"{text!r}: give a unit name like maskwatch.service (letters, digits, "
                                         "'_', '.', '@', '-'; no '/')")
    return text


def install(settings: UnitSettings, unit_dir: Path = UNIT_DIR, name: str = UNIT_NAME,
            dry_run: bool = False, start: bool = True) -> Path:
    """Write the unit, then ``systemctl daemon-reload`` and ``enable --now`` (unless ``start`` is False).

    ``dry_run``: print the unit and the commands, change nothing.
    """
    text = render_unit(settings)
    target = Path(unit_dir) / name
    commands = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", name]] if start else []
    if dry_run:
        print(f"# {target}\n{text}", end="")
        for command in commands:
            print("# would run: " + " ".join(command))
        return target
    systemctl = _systemctl() if start else None
    if not settings.exec_path.exists():
        print(f"maskwatch: warning: {settings.exec_path} does not exist (yet)", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(target)
    print(f"wrote {target}", file=sys.stderr)
    for command in commands:
        _run([systemctl, *command[1:]])
    return target


def uninstall(unit_dir: Path = UNIT_DIR, name: str = UNIT_NAME, dry_run: bool = False, start: bool = True) -> Path:
    """``systemctl disable --now``, remove the unit, ``daemon-reload``. Removing a unit that is not there is fine."""
    target = Path(unit_dir) / name
    if dry_run:
        if start:
            print(f"# would run: systemctl disable --now {name}")
        print(f"# would remove: {target}")
        if start:
            print("# would run: systemctl daemon-reload")
        return target
    systemctl = _systemctl() if start else None
    if start and target.exists():
        _run([systemctl, "disable", "--now", name])
    if target.exists():
        target.unlink()
        print(f"removed {target}", file=sys.stderr)
    else:
        print(f"{target}: not installed", file=sys.stderr)
    if start:
        _run([systemctl, "daemon-reload"])
    return target


def status(name: str = UNIT_NAME) -> int:
    """``systemctl status``'s own output and exit code (3: not running, 4: no such unit)."""
    return subprocess.run([_systemctl(), "status", "--no-pager", name]).returncode


def default_exec_path() -> Path:
    """The ``maskwatch`` script beside this interpreter (the venv that runs this command)."""
    beside = Path(sys.executable).parent / "maskwatch"
    if beside.exists():
        return beside
    found = shutil.which("maskwatch")
    return Path(found) if found else beside


def configure(service: argparse.ArgumentParser) -> None:
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
    service.add_argument("--name", type=unit_name, default=UNIT_NAME, help="unit name (default: %(default)s)")
    service.add_argument("--dry-run", action="store_true", help="print the unit and the systemctl commands; change nothing")
    service.add_argument("--no-start", action="store_true", help="write or remove the unit only; run no systemctl command")
    service.set_defaults(handler=main_args)


def main_args(args: argparse.Namespace) -> int:
    if args.action == "status":
        return status(args.name)
    start = not args.no_start
    if args.action == "uninstall":
        uninstall(args.unit_dir, args.name, dry_run=args.dry_run, start=start)
        return 0
    settings = UnitSettings(exec_path=(args.exec_path or default_exec_path()).absolute(), config=args.config.absolute(),
                            models_dir=args.models_dir.absolute() if args.models_dir else None,
                            state_dir=args.state_dir.absolute(), user=args.user,
                            groups=tuple(args.groups), watchdog_sec=args.watchdog_sec)
    install(settings, args.unit_dir, args.name, dry_run=args.dry_run, start=start)
    return 0
