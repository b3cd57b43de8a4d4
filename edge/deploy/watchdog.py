"""systemd's notify protocol without dependencies: ``READY=1``, ``WATCHDOG=1``, ``STATUS=…``, ``STOPPING=1``.

Under systemd with ``Type=notify`` the service manager puts a datagram socket's
address in ``$NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``)
and, with ``WatchdogSec=``, the watchdog period in ``$WATCHDOG_USEC``. The
service says ``READY=1`` once it can work, then ``WATCHDOG=1`` more often than
that period, or systemd kills and restarts it. Outside systemd every call here
does nothing, so the same code runs from a shell, in tests and on the pole.

The pipeline calls :meth:`Watchdog.ping` once per frame; a ping is sent at most
every half watchdog period, so a 30 fps loop costs one syscall every 15 s::

    watchdog = Watchdog.from_env()
    watchdog.ready("running on /dev/video0")
    while (frame := source.read()) is not None:
        pipeline.process(frame)
        watchdog.ping()
    watchdog.stopping()

A frame loop that hangs (a wedged camera, a stuck delegate) stops the pings;
systemd then restarts the service (``Restart=on-failure``).
"""
from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)
#: Longest wait for room in the receiver's queue before a notification is dropped.
SEND_TIMEOUT_S = 0.5


def notify_address(value: str | None) -> str | bytes | None:
    """The socket address for ``$NOTIFY_SOCKET``: a path, or ``b'\\0name'`` for an abstract ``@name``; None if unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.debug("NOTIFY_SOCKET %r is neither a path nor an abstract name; notifications off", value)
    return None


def notify(message: str, socket_path: str | None = None) -> bool:
    """Send one notification datagram (``"READY=1"``, ``"STATUS=..."``, lines joined by newlines).

    Returns True when sent, False when not under systemd (no ``$NOTIFY_SOCKET``) or the send failed:
    a lost notification must never stop the pipeline, so failures are logged, not raised, and a
    receiver whose queue is full (Linux queues 10 datagrams) is given ``SEND_TIMEOUT_S``, not forever.
    """
    address = notify_address(socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET"))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.sendto(message.encode(), address)
        return True
    except OSError as exc:
        log.warning("sd_notify %r to %r failed: %s", message.split("\n", 1)[0], address, exc)
        return False


def watchdog_period(environ=None) -> float | None:
    """Seconds of ``$WATCHDOG_USEC`` when the watchdog is meant for this process (``$WATCHDOG_PID``), else None."""
    environ = os.environ if environ is None else environ
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class Watchdog:
    """The service's side of systemd's notify protocol; a no-op outside systemd.

    ``socket_path`` is ``$NOTIFY_SOCKET`` (None: not under systemd), ``period`` the watchdog period in
    seconds from ``$WATCHDOG_USEC`` (None: no watchdog). :meth:`ping` sends ``WATCHDOG=1`` at most every
    ``period / 2`` seconds.
    """

    def __init__(self, socket_path: str | None = None, period: float | None = None, clock=time.monotonic):
        self.socket_path = socket_path if notify_address(socket_path) is not None else None
        self.period = period if self.socket_path else None
        self.interval = self.period / 2 if self.period else None
        self.clock = clock
        self._last: float | None = None
        self.sent = 0  #: notifications sent, for logs and tests

    @classmethod
    def from_env(cls, environ=None, clock=time.monotonic) -> "Watchdog":
        environ = os.environ if environ is None else environ
        return cls(environ.get("NOTIFY_SOCKET"), watchdog_period(environ), clock=clock)

    @property
    def active(self) -> bool:
        """True under systemd (a notify socket is set)."""
        return self.socket_path is not None

    def _send(self, *lines: str) -> bool:
        if not self.active:
            return False
        sent = notify("\n".join(lines), self.socket_path)
        self.sent += sent
        return sent

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (and a status line): start-up is done; also the first watchdog ping."""
        self._last = self.clock()
        return self._send("READY=1", *([f"STATUS={status}"] if status else []))

    def ping(self, status: str | None = None) -> bool:
        """Once per frame: ``WATCHDOG=1`` when half the period has passed since the last one, else nothing."""
        if self.interval is None:
            return False
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return self._send("WATCHDOG=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """``STATUS=text``: shown by ``systemctl status``."""
        return self._send(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutting down on purpose (lights off, sinks closing)."""
        return self._send("STOPPING=1", *([f"STATUS={status}"] if status else []))
