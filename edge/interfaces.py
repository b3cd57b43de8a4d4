"""The seams of the pipeline: what it needs from each part it is given, as small Protocols.

The shipped parts (``FaceDetector`` and ``MaskClassifier``, which the face reader joins,
``gpio.Indicator``,
the sinks of ``events``, the previews) satisfy them; so does anything else with
the same methods, which is how a new runtime, output or sink plugs in without
touching the pipeline.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .detector import Faces
    from .sources import Frame
    from .tracker import Track


@runtime_checkable
class Detector(Protocol):
    """Finds faces in BGR frames; ``labels`` names the columns of ``Faces.mask`` (None: no mask head).
    ``min_face_px`` (at its input), ``nominal_input`` (its input's side) and ``iou_threshold`` let the
    face reader plan tiles and merge them."""

    labels: list[str] | None
    min_face_px: float
    nominal_input: int
    iou_threshold: float

    def detect(self, frame_bgr: np.ndarray) -> "Faces": ...
    def detect_many(self, frames_bgr: list[np.ndarray]) -> "list[Faces]": ...


@runtime_checkable
class Classifier(Protocol):
    """Mask-state probabilities (N, len(labels)) for N boxes of a BGR frame; crops grown by ``margin``."""

    labels: list[str]
    margin: float

    def classify_faces(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Indicator(Protocol):
    """Shows a scene state (``decision.STATES``) on lights and buzzer; ``close()`` switches them off."""

    def set_state(self, state: str) -> str: ...
    def close(self) -> None: ...


@runtime_checkable
class EventSink(Protocol):
    """Takes events (dicts of scalars, see ``events.schema``); ``close()`` flushes and releases."""

    def publish(self, event: dict) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class Preview(Protocol):
    """Draws a frame with its tracks and the scene state for a person watching."""

    def show(self, frame: "Frame", tracks: "list[Track]", state: str, fps: float) -> None: ...
    def close(self) -> None: ...
