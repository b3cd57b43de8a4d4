"""The photo shipped in the package, for ``detect``/``predict`` with no image and the ``sample`` source."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_IMAGE = "astronaut.jpg"


def sample_image() -> Path:
    """The image that ships inside the package (a public-domain NASA portrait)."""
    return Path(str(resources.files(__package__) / "assets" / SAMPLE_IMAGE))
