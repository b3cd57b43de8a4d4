"""Getting maskwatch onto a pole: offline bundles, the systemd service, and its watchdog.

- ``bundle.py``: ``maskwatch bundle --target linux-aarch64-py311 --out DIR``: one tar.gz with a
  wheelhouse for the device, the models with their manifest entries, a config, the systemd unit and
  an ``install.sh`` that needs no network and checks every file's sha256 first.
- ``service.py``: ``maskwatch service install|uninstall|status``: the systemd unit.
- ``watchdog.py``: systemd's notify protocol (``READY=1``, ``WATCHDOG=1``) with no dependencies.
"""
from __future__ import annotations

from ..errors import MaskwatchError


class DeployError(MaskwatchError, RuntimeError):
    """A bundle or service step failed: pip, systemctl, a missing file. One line, naming the step."""
