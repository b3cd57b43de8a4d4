"""Where a mask should be: face crops aligned by RetinaFace's five landmarks, and the nose-and-mouth band.

The box crop (:func:`maskwatch.edge.image.crop_with_margin`) takes the face as the box holds it:
tilted, off-centre, with the mask wherever it falls. An aligned crop turns, scales and moves the
face so its eyes, nose and mouth corners land where :data:`TEMPLATE` puts them (the ArcFace
reference points, as insightface aligns faces), with a margin around it, so the nose and the
mouth are always in the same rows; :func:`band` cuts those rows out at a higher resolution.

Example::

    crop = aligned_crop(frame_bgr, faces.landmarks[0], size=96)            # 96x96, upright
    face = aligned_face(frame_bgr, faces.landmarks[0], margin=0.2)         # upright, at the face's own scale
    strip = band(frame_bgr, faces.landmarks[0], width=96, height=48)       # nose to chin

Pure numpy for the transform (least-squares similarity, Umeyama 1991) and one ``cv2.warpAffine``
per crop; pixels outside the frame are the letterbox's grey.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Left eye, right eye, nose tip, left and right mouth corners of a face filling a 112x112 crop
#: (the ArcFace template of insightface), in that crop's pixels.
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
TEMPLATE_SIDE = 112.0
#: The band's rows in the template's pixels: from just above the nose tip to below the chin.
BAND_TOP, BAND_BOTTOM = 60.0, 120.0
#: Fill for pixels outside the frame (the letterbox's grey).
FILL = (114, 114, 114)
#: Landmarks closer together than this (pixels, eye to eye and eyes to mouth) cannot be aligned.
MIN_SPREAD_PX = 1.0


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift that best maps ``source`` (N, 2) onto ``target`` (N, 2)
    in least squares (Umeyama's method, no reflection)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mean_s, mean_t = source.mean(0), target.mean(0)
    s, t = source - mean_s, target - mean_t
    variance = (s ** 2).sum() / len(s)
    if variance < MIN_SPREAD_PX ** 2:
        raise ValueError(f"landmarks spread over {np.sqrt(variance):.2f} px: too close together to align")
    covariance = t.T @ s / len(s)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) > 0 else -1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / variance
    shift = mean_t - scale * rotation @ mean_s
    return np.hstack([scale * rotation, shift[:, None]])


def _template(size_x: float, size_y: float, margin: float, top: float = 0.0, bottom: float = TEMPLATE_SIDE) -> np.ndarray:
    """TEMPLATE placed in an output of ``size_x`` by ``size_y`` pixels that shows the template's columns
    widened by ``margin`` on each side and its rows ``top`` to ``bottom`` (widened by the same margin)."""
    span_x = TEMPLATE_SIDE * (1 + 2 * margin)
    span_y = (bottom - top) + 2 * margin * TEMPLATE_SIDE
    points = TEMPLATE.copy()
    points[:, 0] = (points[:, 0] + margin * TEMPLATE_SIDE) * size_x / span_x
    points[:, 1] = (points[:, 1] - top + margin * TEMPLATE_SIDE) * size_y / span_y
    return points


def aligned_crop(frame: np.ndarray, landmarks: np.ndarray, size: int = 96, margin: float = 0.1) -> np.ndarray:
    """A ``size`` x ``size`` crop of ``frame`` with the face upright and its landmarks on the template,
    ``margin`` (a share of the face's side) of context on each side. ValueError for landmarks too close
    together to align."""
    matrix = similarity(landmarks, _template(size, size, margin))
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=FILL)


def native_side(landmarks: np.ndarray, margin: float = 0.1) -> int:
    """The side, in pixels, of an aligned crop at the face's own scale in the frame (no enlarging or
    shrinking): the template's width with its margins, measured in the frame's pixels."""
    span = TEMPLATE_SIDE * (1 + 2 * margin)
    matrix = similarity(landmarks, _template(span, span, margin))
    return max(1, int(round(span / np.sqrt(abs(np.linalg.det(matrix[:, :2]))))))


def aligned_face(frame: np.ndarray, landmarks: np.ndarray, margin: float = 0.1, largest: int = 256) -> np.ndarray:
    """An aligned crop at the face's own scale (at most ``largest`` pixels a side), to be stretched to a
    model's input like a box crop (:func:`maskwatch.edge.image.stretch`), so a large face is shrunk by
    averaging pixels, as in training, rather than sampled by the warp."""
    return aligned_crop(frame, landmarks, size=min(native_side(landmarks, margin), largest), margin=margin)


def band(frame: np.ndarray, landmarks: np.ndarray, width: int = 96, height: int = 48, margin: float = 0.05) -> np.ndarray:
    """The nose-and-mouth band (template rows :data:`BAND_TOP` to :data:`BAND_BOTTOM`), upright, at
    ``width`` x ``height``: where a mask worn right covers the face and one worn wrong leaves it bare."""
    matrix = similarity(landmarks, _template(width, height, margin, BAND_TOP, BAND_BOTTOM))
    return cv2.warpAffine(frame, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=FILL)
