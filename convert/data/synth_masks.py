"""Synthetic "mask worn incorrectly" faces, made from real faces, for training only.

The redistributable data holds few ``mask_weared_incorrect`` faces (96 in the andrewmvd
scenes), so :func:`synthesize_incorrect` makes more: it takes the real mask of a real
masked face (a ``with_mask`` donor) and moves it down on a real unmasked face, either
below the nose (nose exposed, mouth and chin covered) or onto the chin (nose and mouth
exposed, mask under the lower lip).

How: :func:`landmarks_for` finds five landmarks per crop with the project's RetinaFace
(crop upscaled and padded first). Each face is mapped to the ArcFace 112 x 112 reference
landmarks (:data:`TEMPLATE`) by a least-squares affine. In that frame the donor mask's top
edge is found by colour (mask vs. nose-bridge skin); the mask from that edge down is
moved (one affine: shift, a little squeeze, random width and roll) so its edge lies a
random 8-12 units below the target's nose tip, or 8-11 below its mouth corners; what would
fall under the chin is hidden, as when a real mask is pulled down. It is pasted through an
alpha bounded by the donor's own edge (sharp), a jaw ellipse (soft) and a row the mask may
not pass (under the nostrils, or the lower lip: nothing above it changes), with brightness
matched from the brows, blur matched from the eyes, a faint shadow under its edge, and
grey for a grey photo. A target without landmarks gets the median landmark proportions of
the batch's tight crops (or :data:`TIGHT_CROP_PROPORTIONS`); a target turned aside, or
cut above where its mask would show, is passed over. Donors must be frontal, large, hold
their whole mask, and have a clear mask edge (about a quarter of chandrikadeb7's
with_mask crops do); when the target's split has none, a drawn surgical-like mask (light
blue, white or black, pleats, noise) stands in.

Sources: only faces whose licence allows training a shipped model (chandrikadeb7 crops,
andrewmvd scenes). Never MaskedFace-Net (CC BY-NC-SA). Each output records the unmasked
face's ``source`` and ``split``; donors are drawn from that split only, and the caller
passes train-split faces only, so no validation face (or its mask) leaks into training.

Limits: one affine per face (no 3D pose: turned faces are skipped, tilted ones look
flatter); the five landmarks do not locate the lower lip of an open mouth or the jaw, so
the chin mask may touch the lip or spill past a narrow jaw; a crop cut at the chin cuts
the mask there too; no ear loops, no occlusion by hands or hair; sensor noise and JPEG
artefacts are not matched. Outputs are for training, never for evaluating the
incorrectly-worn class.
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from maskwatch.convert.data.faces import FaceSample

INCORRECT = "mask_weared_incorrect"
#: ArcFace 112 x 112 reference landmarks (insightface): eyes, nose tip, mouth corners.
TEMPLATE = np.float32([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                       [41.5493, 92.3655], [70.7299, 92.2041]])
#: Median landmarks / (width, height) of :func:`landmarks_for` on the 265 tight crops (as in
#: :func:`_tight_proportions`) among 400 random chandrikadeb7 without_mask crops: where a
#: face without landmarks is assumed to have them when its batch has too few tight crops.
TIGHT_CROP_PROPORTIONS = np.float32([[0.301, 0.422], [0.709, 0.394], [0.509, 0.639],
                                     [0.346, 0.769], [0.680, 0.760]])
#: Per mode, in reference units below the face's own nose tip (``below_nose``) or mouth
#: corners (``chin``): range of the mask's top edge at the face's middle, and the row above
#: which nothing changes (below the nostrils, or the lower lip); then, in reference rows, the
#: lowest crop bottom that leaves the mask visible, the mask's lowest row (a mask on the
#: chin hangs under it) and its half width.
MODES = {"below_nose": dict(anchor=2, top=(8, 12), keep=5, bottom=100.0, jaw=124.0, half_width=40.0),
         "chin": dict(anchor=3, top=(8, 11), keep=6, bottom=120.0, jaw=132.0, half_width=36.0)}
#: How often each mode is drawn when a face can show both: most incorrectly worn masks in the
#: andrewmvd train crops sit under the nose over mouth and chin; about a quarter hang on the chin.
MODE_SHARE = {"below_nose": 0.75, "chin": 0.25}
_COLOURS = ((170, 205, 230), (150, 190, 225), (236, 236, 232), (40, 40, 44))


def landmarks_for(samples, detector=None, min_side: int = 112) -> list[np.ndarray | None]:
    """Five (x, y) landmarks per sample in crop pixels, or None where no face is found.

    Each crop is upscaled to at least ``min_side`` px, padded by half its size on each
    side (grey), and the largest detection centred inside the crop is kept.
    ``detector`` defaults to the shipped ``retinaface_mnv2_640_int8.tflite``.
    """
    if detector is None:
        from maskwatch.edge.detector import DetectorConfig, FaceDetector
        detector = FaceDetector.from_config(DetectorConfig(model="retinaface_mnv2_640_int8.tflite"))
    out = []
    for sample in samples:
        image = cv2.cvtColor(sample.pixels, cv2.COLOR_RGB2BGR)
        h, w = image.shape[:2]
        scale = max(1.0, min_side / min(h, w))
        if scale > 1:
            image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
        ph, pw = image.shape[0] // 2, image.shape[1] // 2
        faces = detector.detect(cv2.copyMakeBorder(image, ph, ph, pw, pw, cv2.BORDER_CONSTANT, value=(127,) * 3))
        best, area = None, 0.0
        for box, points in zip(faces.boxes, faces.landmarks):
            cx, cy = (box[0] + box[2]) / 2 - pw, (box[1] + box[3]) / 2 - ph
            size = (box[2] - box[0]) * (box[3] - box[1])
            if 0 <= cx < image.shape[1] and 0 <= cy < image.shape[0] and size > area:
                best, area = (points - (pw, ph)) / scale, size
        out.append(None if best is None else best.astype(np.float32))
    return out


def _fit(points: np.ndarray) -> np.ndarray:
    """3 x 3 least-squares affine from :data:`TEMPLATE` to ``points``."""
    src = np.hstack([TEMPLATE, np.ones((5, 1), np.float32)])
    m = np.linalg.lstsq(src, points.astype(np.float32), rcond=None)[0].T
    return np.vstack([m, [0, 0, 1]])


def _usable_donor(points, shape) -> bool:
    """Frontal enough (nose near the eyes' middle), not tiny, and its mask (cheeks at reference
    row 80, jaw and chin) inside the crop."""
    if points is None:
        return False
    eyes = np.linalg.norm(points[1] - points[0])
    frontal = abs(points[2, 0] - points[:2, 0].mean()) < 0.25 * eyes and eyes >= max(20, 0.2 * shape[1])
    x, y, _ = _fit(points) @ np.float32([[22, 90, 26, 86, 56], [80, 80, 108, 108, 112], [1] * 5])
    return bool(frontal and (x >= 0).all() and (x < shape[1]).all() and (y >= 0).all() and (y < shape[0]).all())


def _tight_proportions(samples, points) -> np.ndarray:
    """Median landmark proportions of the tight crops among ``samples`` (landmarks spanning
    over 0.3 of the width and 0.25 of the height), or the measured constant under five."""
    found = [p / (s.pixels.shape[1], s.pixels.shape[0]) for s, p in zip(samples, points) if p is not None
             and np.ptp(p[:, 0]) > 0.3 * s.pixels.shape[1] and np.ptp(p[:, 1]) > 0.25 * s.pixels.shape[0]]
    return np.median(found, axis=0).astype(np.float32) if len(found) >= 5 else TIGHT_CROP_PROPORTIONS


def _reference(pixels, forward, k=1) -> np.ndarray:
    """The face in the reference frame, 112 x 128 units at ``k`` px per unit."""
    scale = np.diag([1 / k, 1 / k, 1]).astype(np.float32)
    return cv2.warpAffine(pixels, (forward @ scale)[:2], (112 * k, 128 * k),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def _mask_top(pixels, forward) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The donor mask's top edge (a reference row per reference column, 112) and where its
    pixels look like mask (reference frame, 0-1, None: everywhere), or None if unsure.

    A pixel is mask when its Lab colour is nearer the mouth area's (rows 78-96) than the
    nose bridge's (rows 36-48); each column's edge is where the run of mask pixels going up
    from row 86 ends, and a quartic through columns 28-84 (outliers dropped) smooths it,
    continued outward at its end slopes when that is downward.
    Flat at row 60 when mask and skin colours are alike; None when the curve does not peak
    near the nose, sits below row 72 there, or swings over 22 rows, or when under 85% of
    rows 76-104 below it look like the mask (patterned masks, glare, background at the sides).
    """
    lab = cv2.cvtColor(_reference(pixels, forward), cv2.COLOR_RGB2LAB).astype(np.float32)
    skin = np.median(lab[36:48, 48:64].reshape(-1, 3), 0)
    mask = np.median(lab[78:96, 44:68].reshape(-1, 3), 0)
    if np.linalg.norm(skin - mask) < 15:
        return np.full(112, 60.0, np.float32), None
    near = cv2.medianBlur((np.linalg.norm(lab - mask, axis=2) < np.linalg.norm(lab - skin, axis=2))
                          .astype(np.uint8) * 255, 5) > 0
    top = 86.0 - np.cumprod(near[40:87][::-1], axis=0).sum(0) + 1
    x, keep = np.arange(112), np.arange(28, 85)
    for _ in range(3):  # a smooth curve through the columns, dropping outliers
        curve = np.polyval(np.polyfit(keep, top[keep], 4), np.clip(x, 28, 84))
        keep = keep[np.abs(top[keep] - curve[keep]) < max(2.0, 2 * np.std(top[keep] - curve[keep]))]
    below = near[76:104, 20:92][np.arange(76, 104)[:, None] > curve[None, 20:92] + 3]
    if (len(keep) < 25 or curve[56] > 72 or curve[56] - curve.min() > 6 or np.ptp(curve) > 22
            or below.mean() < 0.85):
        return None
    # beyond columns 28 and 84 the edge goes on down toward the ears at its end slope
    curve[:28] += (28 - x[:28]) * max(0.0, (curve[28] - curve[32]) / 4)
    curve[85:] += (x[85:] - 84) * max(0.0, (curve[84] - curve[80]) / 4)
    return np.clip(curve, 45, 80).astype(np.float32), cv2.GaussianBlur(near.astype(np.float32), (0, 0), 1.0)


def _drawn_mask(rng) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, None]]:
    """A surgical-like mask drawn over the reference frame (4 px per unit): image, affine, top edge."""
    k = 4
    colour = np.float32(_COLOURS[rng.integers(len(_COLOURS))])
    y = np.arange(128 * k, dtype=np.float32)[:, None] / k
    x = np.arange(112 * k, dtype=np.float32)[None, :] / k
    shade = 1 - 0.10 * ((x - 56) / 40) ** 2 - 0.06 * np.clip((y - 80) / 40, 0, 1)
    image = colour * shade[..., None] + rng.normal(0, 3, (128 * k, 112 * k, 1)).astype(np.float32)
    for row in np.float32([64, 76, 88]) + rng.uniform(-2, 2):  # pleats, bowed down at the sides
        pleat = np.exp(-((y - row - 2 * ((x - 56) / 40) ** 2) * k / 2) ** 2)
        image *= 1 - 0.2 * pleat[..., None]
    hem = np.exp(-((y - 61) * k / 3) ** 2)  # the stitched hem along the top
    image *= 1 - 0.1 * hem[..., None]
    top = 60 + 2 * ((np.arange(112) - 56) / 40) ** 2
    outline = top.astype(np.float32), None
    return np.clip(image, 0, 255).astype(np.uint8), np.diag([k, k, 1]).astype(np.float32), outline


def _luma(pixels, forward) -> float:
    """Median brightness of the brows-and-bridge band of a face (reference rows 30-48)."""
    return float(np.median(cv2.cvtColor(_reference(pixels, forward)[30:48, 40:72], cv2.COLOR_RGB2GRAY))) + 1.0


def _sharpness(image, region) -> float:
    """Mean absolute Laplacian over contrast in ``region`` (a boolean pixel mask)."""
    gray = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[region].mean() / (gray[region].std() + 1.0))


def _paste(target, t_fwd, points, donor, d_fwd, outline, mode, rng, gain=1.0) -> np.ndarray:
    """``target`` (landmarks ``points``) wearing ``donor``'s mask (``outline``: its top edge
    and maskness from :func:`_mask_top`) in its ``mode`` position."""
    edge, maskness = outline
    spec = MODES[mode]
    t_inv = np.linalg.inv(t_fwd)
    anchors = points[spec["anchor"]:spec["anchor"] + 1 + (mode == "chin")]  # nose tip, or mouth corners
    anchor = (anchors @ t_inv[:2, :2].T + t_inv[:2, 2])[:, 1].mean()
    top, limit = anchor + rng.uniform(*spec["top"]), anchor + spec["keep"]
    widen, squeeze, roll = rng.uniform(0.95, 1.08), rng.uniform(1.0, 1.12), np.deg2rad(rng.uniform(-5, 5))
    s0 = edge[56] + 4.0  # start inside the mask: no donor skin above its hem
    # target pixel -> reference -> mask frame (origin: top edge's middle, rolled) -> donor reference
    c, s = np.cos(roll), np.sin(roll)
    unroll = np.float32([[c, s, -56 * c - top * s], [-s, c, 56 * s - top * c], [0, 0, 1]])
    band = np.float32([[1 / widen, 0, 56], [0, squeeze, s0], [0, 0, 1]])
    h, w = target.shape[:2]
    step = np.sqrt(abs(np.linalg.det((d_fwd @ t_inv)[:2, :2])))
    if step > 1.5:  # shrink the donor first so the warp does not alias
        donor = cv2.resize(donor, None, fx=1 / step, fy=1 / step, interpolation=cv2.INTER_AREA)
        d_fwd = np.diag([1 / step, 1 / step, 1]).astype(np.float32) @ d_fwd

    def warp(m):
        return cv2.warpAffine(donor, m[:2], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE).astype(np.float32)

    to_donor = d_fwd @ band @ unroll @ t_inv
    layer = warp(to_donor) * gain
    inside = cv2.warpAffine(np.ones(donor.shape[:2], np.float32), to_donor[:2], (w, h),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)  # 0 past the donor crop
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    ref = grid @ t_inv[:2, :2].T + t_inv[:2, 2]
    eyes = (ref[..., 0] > 28) & (ref[..., 0] < 84) & (ref[..., 1] > 42) & (ref[..., 1] < 60)
    if eyes.sum() >= 20:  # blur the mask as much as the target: compare both faces' eyes
        aligned, goal = warp(d_fwd @ t_inv), 1.05 * _sharpness(target, eyes)
        for sigma in (0.0, 0.7, 1.0, 1.4, 2.0, 2.8):
            if _sharpness(cv2.GaussianBlur(aligned, (0, 0), sigma) if sigma else aligned, eyes) <= goal:
                break
        layer = cv2.GaussianBlur(layer, (0, 0), sigma) if sigma else layer
    if np.abs(np.diff(target.astype(np.int16), axis=2)).mean() < 2:  # a grey photo gets a grey mask
        layer = np.repeat(layer.mean(axis=2, keepdims=True), 3, axis=2)
    # alpha: inside the jaw ellipse, below the donor's own top edge, below the limit row
    mx, my = (ref @ unroll[:2, :2].T + unroll[:2, 2]).transpose(2, 0, 1)
    unit = max(1.0, np.sqrt(abs(np.linalg.det(t_inv[:2, :2]))))  # reference units per target pixel
    hem = np.interp(mx / widen + 56, np.arange(112), edge + 4.0 - s0) / squeeze
    radius = np.sqrt((mx / (spec["half_width"] * widen)) ** 2 + ((my + top - 80) / (spec["jaw"] - 80)) ** 2)
    allowed = np.clip((ref[..., 1] - limit) / unit + 0.5, 0, 1)
    alpha = np.clip(np.minimum((1 - radius) * 40 / (3 * unit), (my - hem) / unit) + 0.5, 0, 1) * allowed * inside
    if maskness is not None:  # near the hem, drop donor pixels that look like skin
        near = cv2.warpAffine(maskness, (band @ unroll @ t_inv)[:2], (w, h), borderValue=1.0,
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        alpha *= near + (1 - near) * np.clip((my - hem) / 8, 0, 1)
    layer *= (1 - 0.15 * np.clip(radius, 0, 1) ** 2)[..., None]  # the mask turns away at its rim
    shadow = 0.2 * np.exp(-((hem - my) / 1.5) ** 2) * (radius < 1) * allowed  # along the hem, on the skin
    face = target * (1 - shadow)[..., None]
    return np.clip(face * (1 - alpha[..., None]) + layer * alpha[..., None], 0, 255).round().astype(np.uint8)


def _modes_for(shape, t_fwd, modes, points=None) -> list[str]:
    """The ``modes`` this face can show: none for a face turned aside (nose off the eyes'
    middle by over 0.3 eye distances) or with odd landmarks (along the face, eyes to nose
    under 0.3 eye distances or nose to mouth under 0.15: a steep pitch or a failed
    detection), else those whose mask the crop's bottom leaves visible."""
    if points is not None:
        eyes = points[1] - points[0]
        size = np.linalg.norm(eyes)
        down = np.float32([-eyes[1], eyes[0]]) / size
        nose, mouth = (points[2] - points[:2].mean(0)) @ down, (points[3:].mean(0) - points[2]) @ down
        if abs(points[2, 0] - points[:2, 0].mean()) > 0.3 * size or nose < 0.3 * size or mouth < 0.15 * size:
            return []
    bottom = (np.linalg.inv(t_fwd) @ np.float32([shape[1] / 2, shape[0], 1]))[1]
    return [m for m in modes if bottom >= MODES[m]["bottom"]]


def synthesize_incorrect(unmasked, masked, count, rng, detector=None, modes=("below_nose", "chin"),
                         landmarks=None) -> list[FaceSample]:
    """``count`` new ``mask_weared_incorrect`` faces, each an unmasked face wearing a donor's mask low.

    ``unmasked`` and ``masked`` are :class:`FaceSample` lists (pass train-split faces only);
    each output keeps its unmasked face's ``source``, ``split`` and ``box``, and takes its
    mask from a masked face of the same split (a drawn mask when that split has no usable
    donor). Targets cycle in a random order; a crop cut too high to show a mode's mask gets
    another of ``modes``, and a face turned aside or cut too high for all of them is passed
    over (unless that leaves no face). A face that can show several modes gets one drawn by
    :data:`MODE_SHARE`.
    ``rng`` is a ``numpy.random.Generator``: the same seed and inputs give the same outputs.
    ``landmarks``, optional, is ``(unmasked_points, masked_points)`` from
    :func:`landmarks_for`, to skip detection (``detector`` is used otherwise).
    """
    if count <= 0:
        return []
    if not unmasked:
        raise ValueError("synthesize_incorrect needs at least one unmasked face")
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        raise ValueError(f"modes must be among {sorted(MODES)}, not {sorted(unknown) or 'none'}")
    if landmarks is None:
        if detector is None:
            from maskwatch.edge.detector import DetectorConfig, FaceDetector
            detector = FaceDetector.from_config(DetectorConfig(model="retinaface_mnv2_640_int8.tflite"))
        landmarks = landmarks_for(unmasked, detector), landmarks_for(masked, detector)
    t_points, d_points = landmarks
    tight = _tight_proportions(unmasked, t_points)
    targets = []
    for sample, points in zip(unmasked, t_points):
        h, w = sample.pixels.shape[:2]
        found = points if points is not None else tight * (w, h)
        t_fwd = _fit(found)
        targets.append((sample, t_fwd, found, _modes_for((h, w), t_fwd, modes, points)))
    if any(t[3] for t in targets):
        targets = [t for t in targets if t[3]]
    else:
        targets = [(*t[:3], list(modes)) for t in targets]
    donors = {}
    for sample, points in zip(masked, d_points):
        if _usable_donor(points, sample.pixels.shape):
            d_fwd = _fit(points)
            outline = _mask_top(sample.pixels, d_fwd)
            if outline is not None:
                light = _luma(sample.pixels, d_fwd)
                donors.setdefault(sample.split, []).append((sample.pixels, d_fwd, outline, light))
    order = np.concatenate([rng.permutation(len(targets)) for _ in range(-(-count // len(targets)))])
    out = []
    for index in order[:count]:
        target, t_fwd, points, fits = targets[index]
        share = np.array([MODE_SHARE[m] for m in fits])
        mode = fits[rng.choice(len(fits), p=share / share.sum())]
        pool = donors.get(target.split)
        if pool:
            image, d_fwd, outline, light = pool[rng.integers(len(pool))]
            gain = float(np.clip(_luma(target.pixels, t_fwd) / light, 0.7, 1.25))
        else:
            (image, d_fwd, outline), gain = _drawn_mask(rng), 1.0
        pixels = _paste(target.pixels, t_fwd, points, image, d_fwd, outline, mode, rng, gain)
        out.append(replace(target, pixels=pixels, label=INCORRECT))
    return out
