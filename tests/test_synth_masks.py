"""Synthetic incorrectly-worn masks: real chandrikadeb7 faces when present, drawn fallback always."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from maskwatch.convert.data.faces import FaceSample, read_rgb
from maskwatch.convert.data.synth_masks import INCORRECT, landmarks_for, synthesize_incorrect
from maskwatch.benchmarks.accuracy.splits import split_of


def _train_faces(folder: Path, count: int) -> list[FaceSample]:
    """The first ``count`` train-split images of a class folder (sorted by name)."""
    out = []
    for path in sorted(folder.iterdir()):
        if split_of(path) == "train" and (pixels := read_rgb(path)) is not None:
            out.append(FaceSample(pixels, folder.name, path, "train"))
        if len(out) == count:
            break
    return out


@pytest.fixture(scope="module")
def faces(data):
    """Eight unmasked and twelve masked real train faces (five usable donors), with their landmarks."""
    root = data / "crops" / "chandrikadeb7"
    if not root.is_dir():
        pytest.skip(f"{root} absent: the chandrikadeb7 crops are needed")
    from maskwatch.edge.detector import FaceDetector

    unmasked, masked = _train_faces(root / "without_mask", 8), _train_faces(root / "with_mask", 12)
    detector = FaceDetector("retinaface_mnv2_640_int8.tflite")
    return unmasked, masked, (landmarks_for(unmasked, detector), landmarks_for(masked, detector))


def _pairs(out, unmasked, points):
    by_source = {s.source: (s, p) for s, p in zip(unmasked, points)}
    return [(o, *by_source[o.source]) for o in out]


def test_outputs_keep_the_unmasked_face_identity(faces):
    unmasked, masked, marks = faces
    assert sum(p is not None for p in marks[0]) >= 6, "the detector should find most real faces"
    out = synthesize_incorrect(unmasked, masked, 12, np.random.default_rng(0), landmarks=marks)
    assert len(out) == 12
    for synth, face, _ in _pairs(out, unmasked, marks[0]):
        assert synth.label == INCORRECT
        assert synth.pixels.dtype == np.uint8 and synth.pixels.shape == face.pixels.shape
        assert (synth.split, synth.source, synth.box) == (face.split, face.source, face.box)
        assert not np.array_equal(synth.pixels, face.pixels)


@pytest.mark.parametrize("mode", ["below_nose", "chin"])
def test_only_the_lower_face_changes(faces, mode):
    unmasked, masked, marks = faces
    out = synthesize_incorrect(unmasked, masked, 12, np.random.default_rng(1), modes=(mode,), landmarks=marks)
    covered = []
    for synth, face, points in _pairs(out, unmasked, marks[0]):
        if points is None:
            continue
        diff = np.abs(synth.pixels.astype(int) - face.pixels.astype(int)).max(axis=2)
        # how far down the face each pixel lies (along the normal to the eye line, from the eyes)
        eyes, mid = points[1] - points[0], points[:2].mean(axis=0)
        down = np.array([-eyes[1], eyes[0]]) / np.linalg.norm(eyes)
        ys, xs = np.mgrid[: diff.shape[0], : diff.shape[1]]
        depth = (xs - mid[0]) * down[0] + (ys - mid[1]) * down[1]
        nose = (points[2] - mid) @ down
        # eyes, brows and forehead untouched; the nose tip too for below_nose, the mouth for chin
        assert diff[depth < nose / 2].max() <= 2
        x, y = points[2].astype(int) if mode == "below_nose" else points[3:].mean(axis=0).astype(int)
        assert diff[y - 1:y + 2, x - 1:x + 2].max() <= 2, "the nose (below_nose) or mouth (chin) stays visible"
        assert (diff > 2).any() and depth[diff > 2].min() > nose
        if mode == "below_nose":  # the mouth is covered
            mx, my = points[3:].mean(axis=0).astype(int)
            covered.append(diff[my - 2:my + 3, mx - 2:mx + 3].mean())
    if covered:
        assert np.mean(np.array(covered) > 10) >= 0.75


def test_same_seed_same_faces(faces):
    unmasked, masked, marks = faces
    first, again, other = (synthesize_incorrect(unmasked, masked, 6, np.random.default_rng(seed), landmarks=marks)
                           for seed in (3, 3, 4))
    assert all(np.array_equal(a.pixels, b.pixels) and a.source == b.source for a, b in zip(first, again))
    assert any(not np.array_equal(a.pixels, b.pixels) for a, b in zip(first, other))


def test_donors_come_from_the_target_split_only(faces):
    unmasked, masked, marks = faces
    val_donors = [replace(s, split="val") for s in masked]
    crossed = synthesize_incorrect(unmasked, val_donors, 4, np.random.default_rng(5), landmarks=marks)
    drawn = synthesize_incorrect(unmasked, [], 4, np.random.default_rng(5), landmarks=(marks[0], []))
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(crossed, drawn))
    real = synthesize_incorrect(unmasked, masked, 4, np.random.default_rng(5), landmarks=marks)
    assert not any(np.array_equal(a.pixels, b.pixels) for a, b in zip(real, drawn)), "train donors were used"


def test_no_detection_no_donor_still_works(tmp_path):
    """Without data: faces the detector would miss get measured proportions and a drawn mask."""
    rng = np.random.default_rng(0)
    faces = [FaceSample(rng.integers(60, 200, (96, 80, 3), dtype=np.uint8), "without_mask",
                        tmp_path / f"{i}.png", "train") for i in range(3)]
    out = synthesize_incorrect(faces, [], 5, np.random.default_rng(0), landmarks=([None] * 3, []))
    assert len(out) == 5
    by_source = {f.source: f for f in faces}
    for synth in out:
        face = by_source[synth.source]
        assert synth.label == INCORRECT and synth.pixels.shape == (96, 80, 3)
        assert np.array_equal(synth.pixels[:30], face.pixels[:30])  # eyes (at 42% of the height) untouched
        assert not np.array_equal(synth.pixels[60:], face.pixels[60:])  # a mask below the nose (64%)


def test_zero_count_and_bad_modes():
    assert synthesize_incorrect([], [], 0, np.random.default_rng(0)) == []
    face = FaceSample(np.zeros((64, 64, 3), np.uint8), "without_mask", Path("x.png"), "train")
    with pytest.raises(ValueError, match="modes"):
        synthesize_incorrect([face], [], 1, np.random.default_rng(0), modes=("nose_only",), landmarks=([None], []))
    with pytest.raises(ValueError, match="unmasked"):
        synthesize_incorrect([], [], 1, np.random.default_rng(0))
