"""``CropWriter``: face crops to a folder, only when ``privacy.save_crops`` asks for them.

The folder is checked when the writer is built (made when missing, then a test
file written and removed), so a read-only or missing place is a one-line
ConfigError before the first frame rather than a crash in the middle of a run.
A crop that cannot be written later (a full disk) never stops the pipeline: it
is counted in ``lost``, said once, and writing resumes by itself when it works
again, which is said once too.

Example::

    crops = CropWriter("/var/lib/maskwatch/crops", device_id="pole-12")
    crops.save(frame, track, "without_mask", margin=classifier.margin)
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import cv2

from .errors import ConfigError
from .image import crop_with_margin

log = logging.getLogger(__name__)


class CropWriter:
    """JPEG crops named ``<device>_f<frame>_t<track>_<label>.jpg`` in ``folder``."""

    def __init__(self, folder: str | Path, *, device_id: str):
        self.folder, self.device_id = Path(folder), device_id
        self.saved = self.lost = 0
        self._failing = False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise ConfigError(f"privacy.crops_dir {self.folder}: cannot write face crops there "
                              f"({exc.strerror or exc})") from None

    def save(self, frame, track, label: str, margin: float) -> None:
        """Write the crop of ``track`` in ``frame``; a failure is counted and logged once, never raised."""
        path = self.folder / f"{self.device_id}_f{frame.index:07d}_t{track.id}_{label}.jpg"
        crop = crop_with_margin(frame.image, track.box, margin)
        try:
            ok, data = cv2.imencode(".jpg", crop)
            if not ok:
                raise OSError("JPEG encoding failed")
            with open(path, "wb") as out:
                out.write(data.tobytes())
        except OSError as exc:
            self.lost += 1
            path.unlink(missing_ok=True)  # never a torn JPEG
            if not self._failing:
                self._failing = True
                log.warning("%s: cannot write face crops (%s); counting the lost ones and retrying",
                            self.folder, exc.strerror or exc)
            return
        self.saved += 1
        if self._failing:
            self._failing = False
            log.info("%s: writing face crops again (%d lost meanwhile)", self.folder, self.lost)

    def __repr__(self) -> str:
        return f"<CropWriter {self.folder} saved {self.saved} lost {self.lost}>"
