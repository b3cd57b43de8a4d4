"""Annotating frames for previews and pictures."""
from __future__ import annotations

import cv2
import numpy as np

FACE_COLOUR = (255, 200, 0)  # BGR: cyan-blue for an unclassified face
LANDMARK_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255))


def draw_faces(frame_bgr: np.ndarray, faces, colour=FACE_COLOUR, labels: list[str] | None = None) -> np.ndarray:
    """A copy of the frame with each face's box, score (or label) and landmarks drawn."""
    out = frame_bgr.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for i, (box, score, points) in enumerate(zip(faces.boxes, faces.scores, faces.landmarks)):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = labels[i] if labels else f"{score:.2f}"
        cv2.putText(out, text, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, colour, thickness)
        for (x, y), c in zip(points, LANDMARK_COLOURS):
            cv2.circle(out, (int(round(x)), int(round(y))), thickness + 1, c, -1)
    return out
