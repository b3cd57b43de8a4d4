"""``maskwatch service install|uninstall|status``: the unit of :mod:`.unit` written and enabled with systemctl.

Example::

    maskwatch service install --user maskwatch --config /etc/maskwatch/maskwatch.toml
    maskwatch service install --dry-run            # show the unit and the systemctl commands
    maskwatch service status
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import DeployError
from .unit import UNIT_DIR, UNIT_NAME, UnitSettings, render_unit


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


#: Present while systemd runs the system (sd_booted(3)); systemctl installed in a container or chroot is not enough.
SYSTEMD_RUNNING = Path("/run/systemd/system")


def status(name: str = UNIT_NAME, running: Path = SYSTEMD_RUNNING) -> int:
    """``systemctl status``'s own output and exit code (3: not running, 4: no such unit); a one-line
    DeployError where systemd does not run this system."""
    systemctl = _systemctl()
    if not running.is_dir():
        raise DeployError(f"systemd is not running this system ({running} is absent): no service to show")
    return subprocess.run([systemctl, "status", "--no-pager", name]).returncode


def default_exec_path() -> Path:
    """The ``maskwatch`` script beside this interpreter (the venv that runs this command)."""
    beside = Path(sys.executable).parent / "maskwatch"
    if beside.exists():
        return beside
    found = shutil.which("maskwatch")
    return Path(found) if found else beside
