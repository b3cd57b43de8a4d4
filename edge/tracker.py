"""Tracking faces across frames and deciding their labels by vote.

Each detected face is matched to a track by box overlap (greedy IoU, best
pairs first). A track's label changes only after ``vote_agree`` of its last
``vote_window`` classifications agree, so one flickering frame never sounds
the buzzer, and one person standing unmasked is one ``new`` event, not one per
frame. A track's crop is classified again only every ``reclassify_every``
frames: the label of a tracked face is reused in between.

One call a frame: :meth:`Tracker.step` matches the faces, asks ``classify`` for a
``(label, score)`` of each track that is due, votes, and returns everything the
frame changed as one :class:`TrackUpdate`.

Example::

    tracker = Tracker(TrackerConfig())
    update = tracker.step(faces.boxes, faces.scores, frame_index,
                          classify=lambda due: [("with_mask", 0.9) for _ in due])
    for track in update.new: ...
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .postprocess import iou

class TrackerConfig(BaseModel):
    """Tracking and voting settings."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="tracker")

    iou_threshold: float = Field(0.3, gt=0, lt=1, description="minimum box overlap to continue a track")
    max_missed: int = Field(10, ge=0, description="frames a track survives without a matching face")
    vote_window: int = Field(5, ge=1, le=100, description="N: classifications remembered per track")
    vote_agree: int = Field(3, ge=1, description="K: votes of the last N that must agree to set or change a label")
    reclassify_every: int = Field(3, ge=1, description="classify a tracked face every this many frames")
    min_face_px: int = Field(16, ge=0, description="faces whose shorter side is smaller are tracked but never classified")

    @model_validator(mode="after")
    def _agree_within_window(self):
        if self.vote_agree > self.vote_window:
            raise ValueError(f"vote_agree ({self.vote_agree}) must not exceed vote_window ({self.vote_window})")
        return self


@dataclass
class Track:
    id: int
    box: np.ndarray
    score: float
    first_frame: int
    last_frame: int
    missed: int = 0
    votes: deque = field(default_factory=deque)
    label: str | None = None  #: the voted label; None until K votes agree
    label_score: float = 0.0
    last_classified: int | None = None
    detection: int = -1  #: index of this track's face among the last frame's detections


@dataclass(frozen=True)
class TrackUpdate:
    """What one frame changed: tracks seen this frame, those classified, label changes, tracks that ended."""

    seen: list[Track]
    classified: list[Track]  #: due this frame: their crops were classified and voted
    new: list[Track]  #: got their first voted label
    changed: list[Track]  #: voted label changed
    ended: list[Track]


#: ``classify(due)``: one ``(label, score)`` per track of ``due``, in order.
Classify = Callable[[list[Track]], Sequence[tuple[str, float]]]


class Tracker:
    """IoU tracker with K-of-N label voting; see the module docstring."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: dict[int, Track] = {}
        self._next_id = 1
        self._frame = -1

    def step(self, boxes: np.ndarray, scores: np.ndarray, frame_index: int | None = None,
             classify: Classify | None = None) -> TrackUpdate:
        """One frame: match its faces to tracks (new tracks start, unmatched ones age and end), classify
        the tracks that are due with ``classify`` (None: none is classified) and vote their labels."""
        seen, ended = self._associate(boxes, scores, frame_index)
        due = self._due(seen) if classify is not None else []
        new, changed = [], []
        if due:
            results = list(classify(due))
            if len(results) != len(due):
                raise ValueError(f"classify returned {len(results)} labels for {len(due)} faces")
            for track, (label, score) in zip(due, results):
                change = self._vote(track, label, score)
                if change is not None:
                    (new if change == "new" else changed).append(track)
        return TrackUpdate(seen=seen, classified=due, new=new, changed=changed, ended=ended)

    def _associate(self, boxes: np.ndarray, scores: np.ndarray,
                   frame_index: int | None) -> tuple[list[Track], list[Track]]:
        """Match this frame's faces to tracks; start new tracks, age and end unmatched ones."""
        self._frame = self._frame + 1 if frame_index is None else frame_index
        tracks = list(self.tracks.values())
        pairs = self._match(tracks, boxes)
        matched_tracks, matched_faces = {t for t, _ in pairs}, {f for _, f in pairs}
        seen = []
        for t, f in pairs:
            track = tracks[t]
            track.box, track.score, track.last_frame, track.missed = boxes[f], float(scores[f]), self._frame, 0
            track.detection = f
            seen.append(track)
        for f in range(len(boxes)):
            if f not in matched_faces:
                track = Track(self._next_id, boxes[f], float(scores[f]), self._frame, self._frame,
                              votes=deque(maxlen=self.config.vote_window), detection=f)
                self.tracks[track.id] = track
                self._next_id += 1
                seen.append(track)
        ended = []
        for t, track in enumerate(tracks):
            if t not in matched_tracks:
                track.missed += 1
                if track.missed > self.config.max_missed:
                    ended.append(self.tracks.pop(track.id))
        return seen, ended

    def _match(self, tracks: list[Track], boxes: np.ndarray) -> list[tuple[int, int]]:
        if not tracks or not len(boxes):
            return []
        overlaps = np.stack([iou(track.box, boxes) for track in tracks])
        pairs = []
        while True:
            t, f = np.unravel_index(np.argmax(overlaps), overlaps.shape)
            if overlaps[t, f] < self.config.iou_threshold:
                return pairs
            pairs.append((int(t), int(f)))
            overlaps[t, :], overlaps[:, f] = -1, -1

    def _due(self, seen: list[Track]) -> list[Track]:
        """Tracks seen this frame whose crop should be classified now."""
        every, smallest = self.config.reclassify_every, self.config.min_face_px
        return [t for t in seen
                if min(t.box[2] - t.box[0], t.box[3] - t.box[1]) >= smallest
                and (t.last_classified is None or self._frame - t.last_classified >= every)]

    def _vote(self, track: Track, label: str, score: float) -> str | None:
        """Record one classification; set or change the track's label when K of the last N agree.
        Returns ``"new"`` (its first label), ``"changed"`` or None."""
        track.votes.append((label, score))
        track.last_classified = self._frame
        agreeing = [s for l, s in track.votes if l == label]
        change = None
        if len(agreeing) >= self.config.vote_agree and label != track.label:
            change = "new" if track.label is None else "changed"
            track.label = label
        if label == track.label:
            track.label_score = float(np.mean(agreeing))
        return change
