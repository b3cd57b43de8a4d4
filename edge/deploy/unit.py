"""The systemd unit that runs ``maskwatch run`` on the pole, rendered from checked settings.

The unit starts on boot, runs as an unprivileged user in the ``gpio`` and ``video``
groups, tells systemd when it is ready (``Type=notify``) and pings its watchdog
once per frame (``edge/deploy/watchdog.py``), so a hung camera or delegate gets
the service restarted; it restarts on failure with a back-off and gives up after
``StartLimitBurst`` failures in ``StartLimitIntervalSec``.

What the sandbox reaches (``systemd-analyze security`` exposure 1.6, from 5.8): no capabilities
at all, no privilege gain, a read-only system except the state folder (events, spool), its own
/tmp, no home folders, other processes hidden, a system-call allow list (``@system-service``,
less ``@privileged``), native system calls only, no writable-and-executable memory, no kernel
tunables, modules, logs, clock or host name, a memory cap (``MemoryMax``, default 1G) and a
device allow list. What it cannot reach: the pins and the camera need their device nodes
(``DeviceAllow=``: gpiochip, gpiomem, video4linux, media, dma_heap, vchiq, and the USB and PCIe
Coral), MQTT needs the network (so no ``PrivateNetwork=``/``IPAddressDeny=``: the broker can be
anywhere), gpiozero and Jetson.GPIO read the board's revision from ``/proc/device-tree`` and
``/proc/cpuinfo`` (so no ``ProcSubset=pid``), the ``gpio``/``video`` groups must keep working on
the device nodes (so no ``PrivateUsers=``), and the runtimes' thread pools may set their CPU
affinity (so ``@resources`` stays allowed). A board that needs more devices (a Jetson camera:
``char-nvhost*`` and ``char-misc`` for nvmap) gets them with ``--devices``; ``--devices`` with no
value drops the device list. A forbidden system call fails with EPERM rather than killing the
service.

Every value that goes into the unit is checked: control characters (a newline would start a new
directive) are refused naming the option, ``%`` is written ``%%`` (systemd's specifiers) and
``$`` as ``$$`` on the command line (systemd's variables), paths with spaces are quoted, and
``--user``/``--groups`` must be plain account names.

Example::

    text = render_unit(UnitSettings(user="maskwatch", config=Path("/etc/maskwatch/maskwatch.toml")))
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from . import DeployError

UNIT_NAME = "maskwatch.service"
UNIT_DIR = Path("/etc/systemd/system")
PREFIX = Path("/opt/maskwatch")                          #: venv/ and models/ of an installed bundle
CONFIG = Path("/etc/maskwatch/maskwatch.toml")
STATE_DIR = Path("/var/lib/maskwatch")                   #: events, MQTT spool: the only writable place
USER = "maskwatch"
GROUPS = ("gpio", "video")                               #: GPIO pins (gpiozero/lgpio, Jetson.GPIO) and cameras
WATCHDOG_SEC = 30
MEMORY_MAX = "1G"                                        #: MemoryMax=: the kernel's OOM killer stops the service there
#: DeviceAllow= groups from /proc/devices (globs allowed); every other device node is refused.
DEVICES = (
    "char-gpiochip",       # /dev/gpiochip* (gpiozero's lgpio, Jetson.GPIO's cdev)
    "char-*gpiomem*",      # /dev/gpiomem* (RPi.GPIO, pigpio)
    "char-video4linux",    # /dev/video*, /dev/v4l-subdev* (USB and CSI cameras)
    "char-media",          # /dev/media* (libcamera, Picamera2)
    "char-dma_heap",       # /dev/dma_heap/* (Picamera2's frame buffers)
    "char-vchiq",          # /dev/vchiq (the Pi's legacy camera stack)
    "char-usb_device",     # /dev/bus/usb/* (the USB Coral Edge TPU)
    "char-apex",           # /dev/apex_* (the PCIe Coral Edge TPU)
)
#: The CLI option behind each UnitSettings field, so a refused value names what the user typed.
OPTIONS = {"exec_path": "--exec", "config": "--config", "models_dir": "--models-dir", "state_dir": "--state-dir",
           "user": "--user", "groups": "--groups", "memory_max": "--memory-max", "devices": "--devices"}
#: systemd's account names (``valid_user_group_name``, strict): what useradd makes by default.
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,30}")
_SIZE = re.compile(r"[0-9]+[KMGT]?|[0-9]{1,3}%|infinity")
_DEVICE = re.compile(r"(char|block)-[A-Za-z0-9_.*?/-]+|/dev/[A-Za-z0-9_./-]+")


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
    memory_max: str = MEMORY_MAX                         #: MemoryMax=: bytes with K/M/G/T, a percentage, or infinity
    devices: tuple[str, ...] = field(default=DEVICES)    #: DeviceAllow= (read-write); empty: no device list


def _bad(name: str, value, why: str) -> ConfigError:
    return ConfigError(f"{OPTIONS.get(name, name)} {str(value)!r}: {why}")


def _text(name: str, value) -> str:
    """``value`` as text fit for one unit line; refuses what systemd would read as more than a value:
    control characters (a newline starts a new directive), quotes and backslashes (systemd's own
    quoting), and leading or trailing blanks (systemd strips them)."""
    text = str(value)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise _bad(name, value, "control characters (newline, tab, ...) cannot go in a systemd unit")
    if '"' in text or "\\" in text:
        raise _bad(name, value, "quotes and backslashes are not supported in a systemd unit")
    if text != text.strip():
        raise _bad(name, value, "leading or trailing blanks are not supported in a systemd unit")
    return text


def _specifiers(text: str) -> str:
    """``%`` doubled: systemd expands ``%h``, ``%u``... in nearly every setting."""
    return text.replace("%", "%%")


def _word(name: str, value, command_line: bool = False) -> str:
    """One word of a setting that splits on blanks (``ExecStart=``, ``Environment=``, ``ReadWritePaths=``),
    quoted when it holds a space; on a command line ``$`` is doubled too (systemd expands ``$VAR`` there)."""
    text = _specifiers(_text(name, value))
    if command_line:
        text = text.replace("$", "$$")
    return f'"{text}"' if " " in text else text


def _path(name: str, value) -> str:
    """A setting that is one path (``WorkingDirectory=``): taken whole by systemd, never quoted."""
    return _specifiers(_text(name, value))


def _account(name: str, value: str) -> str:
    if not _ACCOUNT.fullmatch(value):
        raise _bad(name, value, "not a user or group name (letters, digits, '_' and '-', not starting with a digit "
                                "or '-', at most 31 characters)")
    return value


def render_unit(s: UnitSettings | None = None) -> str:
    """The unit file's text; a value that cannot be written safely is a one-line ConfigError naming its option."""
    s = s or UnitSettings()
    if s.watchdog_sec < 2:
        raise DeployError(f"watchdog_sec {s.watchdog_sec}: at least 2 seconds (the pipeline pings every half period)")
    if not _SIZE.fullmatch(s.memory_max):
        raise _bad("memory_max", s.memory_max, "give bytes with an optional K, M, G or T (1G, 800M), "
                                               "a percentage of RAM (50%) or infinity")
    for device in s.devices:
        if not _DEVICE.fullmatch(device):
            raise _bad("devices", device, "give a /proc/devices group (char-video4linux, char-nvhost*) or a /dev/ path")
    user = _account("user", s.user)
    groups = " ".join(_account("groups", g) for g in s.groups)
    env = ["PYTHONUNBUFFERED=1"]
    if s.models_dir is not None:
        env.append(f"MASKWATCH_MODELS={_text('models_dir', s.models_dir)}")
    environment = "\n".join(f"Environment={_word('models_dir', e)}" for e in env)
    # StateDirectory= creates the folder owned by the service user before the sandbox is set up;
    # it only takes names under /var/lib.
    under_var_lib = s.state_dir.parent == Path("/var/lib")
    state_line = (f"StateDirectory={_path('state_dir', s.state_dir.name)}\nStateDirectoryMode=0750\n"
                  if under_var_lib else "")
    devices = "".join(f"DeviceAllow={d} rw\n" for d in s.devices)
    device_policy = f"DevicePolicy=closed\n{devices}" if s.devices else ""
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
ExecStart={_word('exec_path', s.exec_path, True)} run --config {_word('config', s.config, True)}
{environment}
User={user}
Group={user}
SupplementaryGroups={groups}
WorkingDirectory={_path('state_dir', s.state_dir)}
# READY=1 comes once the models are loaded; WATCHDOG=1 once per frame, at most every {s.watchdog_sec / 2:g} s.
TimeoutStartSec=180
WatchdogSec={s.watchdog_sec}
Restart=on-failure
RestartSec={s.restart_sec}
# SIGTERM: lights and buzzer off, events flushed, exit 0.
KillSignal=SIGTERM
TimeoutStopSec=20
# Past this the kernel's OOM killer ends the service and systemd restarts it.
MemoryMax={s.memory_max}
{state_line}ReadWritePaths={_word('state_dir', s.state_dir)}
# Hardening: no capabilities, a read-only system, a system-call allow list, a device allow list.
# Left out, because the pole needs them: PrivateNetwork=/IPAddressDeny= (MQTT to any broker),
# ProcSubset=pid (gpiozero and Jetson.GPIO read the board from /proc/device-tree and /proc/cpuinfo),
# PrivateUsers= (the gpio and video groups must keep working). Check: systemd-analyze security {UNIT_NAME}
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateMounts=yes
ProtectProc=invisible
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
RemoveIPC=yes
# No writable-and-executable memory: LiteRT/XNNPACK, ONNX Runtime, NumPy and OpenCV do not need it
# (if a delegate does: `systemctl edit maskwatch` with MemoryDenyWriteExecute=no).
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
# The pins and cameras are device nodes: only these groups (from /proc/devices) are opened.
{device_policy}UMask=0027

[Install]
WantedBy=multi-user.target
"""
