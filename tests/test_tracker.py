"""Tracking and K-of-N voting on synthetic detections with known answers."""
import numpy as np
import pytest
from pydantic import ValidationError

from maskwatch.edge.tracker import Tracker, TrackerConfig


def boxes(*rows):
    return np.array(rows, np.float32).reshape(-1, 4)


def step(tracker, rows, labels=None):
    """One frame: faces at ``rows`` (a list of boxes), classified as ``labels`` (by position) when due."""
    b = boxes(*rows)
    by_face = labels or ["without_mask"] * len(b)
    return tracker.step(b, np.ones(len(b), np.float32),
                        classify=lambda due: [(by_face[t.detection], 0.9) for t in due])


def test_a_moving_face_keeps_its_track():
    tracker = Tracker(TrackerConfig(reclassify_every=1))
    ids = [step(tracker, [[10 + 3 * i, 10, 50 + 3 * i, 60]]).seen[0].id for i in range(10)]
    assert ids == [1] * 10


def test_two_faces_two_tracks_and_a_new_one_after_a_gap():
    tracker = Tracker(TrackerConfig(max_missed=2))
    first = step(tracker, [[0, 0, 40, 40], [100, 0, 140, 40]])
    assert sorted(t.id for t in first.seen) == [1, 2]
    for _ in range(3):
        update = step(tracker, [[0, 0, 40, 40]])
    assert [t.id for t in update.ended] == [2]
    assert step(tracker, [[0, 0, 40, 40], [100, 0, 140, 40]]).seen[1].id == 3


def test_one_flickering_frame_never_changes_the_label():
    tracker = Tracker(TrackerConfig(reclassify_every=1, vote_window=5, vote_agree=3))
    labels = ["with_mask"] * 4 + ["without_mask"] + ["with_mask"] * 4
    news, changes = [], []
    for label in labels:
        update = step(tracker, [[0, 0, 40, 40]], [label])
        news += update.new
        changes += update.changed
    assert len(news) == 1 and not changes
    assert tracker.tracks[1].label == "with_mask"


def test_label_set_after_k_votes_and_changes_once():
    tracker = Tracker(TrackerConfig(reclassify_every=1, vote_window=5, vote_agree=3))
    events = []
    for i, label in enumerate(["without_mask"] * 4 + ["with_mask"] * 5):
        update = step(tracker, [[0, 0, 40, 40]], [label])
        events += [("new", i) for _ in update.new] + [("changed", i) for _ in update.changed]
    assert events == [("new", 2), ("changed", 6)]


def test_tracked_faces_reuse_their_label_between_classifications():
    tracker = Tracker(TrackerConfig(reclassify_every=4))
    classified = []
    for i in range(9):
        update = tracker.step(boxes([0, 0, 40, 40]), np.ones(1, np.float32),
                              classify=lambda due: [("with_mask", 0.9)] * len(due))
        classified.append(len(update.classified))
    assert classified == [1, 0, 0, 0, 1, 0, 0, 0, 1]


def test_tiny_faces_are_tracked_but_not_classified():
    tracker = Tracker(TrackerConfig(min_face_px=12))
    asked = []
    update = tracker.step(boxes([0, 0, 10, 30]), np.ones(1, np.float32), classify=asked.append)
    assert len(update.seen) == 1 and update.classified == [] and asked == []


def test_a_classifier_that_returns_too_few_labels_is_an_error():
    tracker = Tracker()
    with pytest.raises(ValueError, match="1 labels for 2 faces"):
        tracker.step(boxes([0, 0, 40, 40], [100, 0, 140, 40]), np.ones(2, np.float32),
                     classify=lambda due: [("with_mask", 0.9)])


def test_config_rejects_unknown_keys_and_bad_votes():
    with pytest.raises(ValidationError, match="vote_agre"):
        TrackerConfig(vote_agre=3)
    with pytest.raises(ValidationError, match="must not exceed"):
        TrackerConfig(vote_window=2, vote_agree=3)
