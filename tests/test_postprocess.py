"""Anchors, decoding and NMS on synthetic arrays with known answers."""
import numpy as np
import pytest

from maskwatch.edge.postprocess import (DETECTION_COLUMNS, AnchorConfig, PostprocessSettings, RetinaFaceDecoder, anchors,
                              decode_boxes, decode_landmarks, nms, softmax_face_score)


def test_anchor_count_and_layout():
    a = anchors(64, 96)
    # stride 8: 8x12 cells, 16: 4x6, 32: 2x3; two sizes each
    assert a.shape == ((8 * 12 + 4 * 6 + 2 * 3) * 2, 4)
    assert a.dtype == np.float32 and not a.flags.writeable
    np.testing.assert_allclose(a[0], [4, 4, 16, 16])
    np.testing.assert_allclose(a[1], [4, 4, 32, 32])
    np.testing.assert_allclose(a[2], [12, 4, 16, 16])  # next column, row-major
    np.testing.assert_allclose(a[2 * 12], [4, 12, 16, 16])  # next row
    np.testing.assert_allclose(a[8 * 12 * 2], [8, 8, 64, 64])  # first stride-16 anchor
    np.testing.assert_allclose(a[-1], [80, 48, 512, 512])  # last stride-32 cell, larger size


def test_anchors_cached_per_shape():
    assert anchors(32, 32) is anchors(32, 32)
    assert anchors(32, 64) is not anchors(64, 32)


def test_odd_sizes_round_feature_maps_up():
    assert len(anchors(40, 40)) == (5 * 5 + 3 * 3 + 2 * 2) * 2


def test_decode_zero_deltas_returns_the_anchor():
    priors = np.array([[50, 60, 20, 40]], np.float32)
    np.testing.assert_allclose(decode_boxes(np.zeros((1, 4)), priors), [[40, 40, 60, 80]])
    np.testing.assert_allclose(decode_landmarks(np.zeros((1, 10)), priors), [[50, 60] * 5])


def test_decode_known_deltas():
    priors = np.array([[100, 100, 10, 20]], np.float32)
    # dx=1 -> +1*0.1*10 = 1 px, dy=-1 -> -1*0.1*20 = -2 px; width log-scale dw: exp(dw*0.2) = 2 when dw = ln2/0.2
    deltas = np.array([[1.0, -1.0, np.log(2) / 0.2, 0.0]])
    np.testing.assert_allclose(decode_boxes(deltas, priors), [[91, 88, 111, 108]], rtol=1e-6)
    points = decode_landmarks(np.array([[1, 2] * 5], np.float32), priors)
    np.testing.assert_allclose(points, [[101, 104] * 5])


def test_softmax_face_score():
    np.testing.assert_allclose(softmax_face_score(np.array([[0.0, 0.0], [0.0, np.log(3)]])), [0.5, 0.75], rtol=1e-6)


def test_nms_keeps_best_of_overlapping_and_disjoint():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 0, 2, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.4).tolist() == []


def _heads(height, width, faces):
    """Heads where the given anchor indices hold a face (high logit, zero deltas)."""
    n = len(anchors(height, width))
    classes = np.tile([[4.0, -4.0]], (n, 1)).astype(np.float32)
    for index in faces:
        classes[index] = [-4.0, 4.0]
    return np.zeros((n, 4), np.float32), np.zeros((n, 10), np.float32), classes


def test_decoder_finds_planted_faces():
    bbox, landmark, classes = _heads(64, 64, [0, 2 * 8 * 8 + 1])
    rows = RetinaFaceDecoder()(bbox, landmark, classes, 64, 64)
    assert rows.shape == (2, DETECTION_COLUMNS) and rows.dtype == np.float32
    np.testing.assert_allclose(sorted(rows[:, :4].tolist()), [[-56, -56, 72, 72], [-4, -4, 12, 12]])
    np.testing.assert_allclose(rows[:, 4], 1 / (1 + np.exp(-8)), rtol=1e-5)


def test_decoder_threshold_and_empty_result_is_typed():
    bbox, landmark, classes = _heads(64, 64, [])
    rows = RetinaFaceDecoder()(bbox, landmark, classes, 64, 64)
    assert rows.shape == (0, DETECTION_COLUMNS) and rows.dtype == np.float32
    low = RetinaFaceDecoder(settings=PostprocessSettings(score_threshold=1e-4))(bbox, landmark, classes, 64, 64)
    assert len(low) > 0


def test_decoder_suppresses_duplicates_and_caps():
    bbox, landmark, classes = _heads(64, 64, [0, 1])  # same centre, sizes 16 and 32: IoU 0.25
    assert len(RetinaFaceDecoder()(bbox, landmark, classes, 64, 64)) == 2
    strict = RetinaFaceDecoder(settings=PostprocessSettings(iou_threshold=0.2))
    assert len(strict(bbox, landmark, classes, 64, 64)) == 1
    capped = RetinaFaceDecoder(settings=PostprocessSettings(max_detections=1))
    assert len(capped(bbox, landmark, classes, 64, 64)) == 1


def test_decoder_rejects_heads_of_another_size():
    bbox, landmark, classes = _heads(64, 64, [0])
    with pytest.raises(ValueError, match="anchors"):
        RetinaFaceDecoder()(bbox, landmark, classes, 96, 64)


def test_anchor_config_round_trip():
    config = AnchorConfig()
    assert AnchorConfig.from_dict(config.to_dict()) == config
