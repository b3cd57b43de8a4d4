"""The frame's journey, top to bottom: source -> detect -> track (crop and classify the faces due) -> decide
-> signal/publish -> preview.

Everything the pipeline touches is injected (detector, classifier, tracker,
decision, indicator, event sink, preview), built once before the first frame.
The scene's state has one owner, the :class:`~maskwatch.edge.decision.Decision`:
when it changes the pipeline publishes a ``state`` event and shows it on the
indicator; the preview draws it and the MQTT sink turns it into its state topics.

Example::

    pipeline = Pipeline(FaceDetector.from_config(config.detector), MaskClassifier.from_config(config.classifier),
                        Tracker(config.tracker), indicator, sink, device_id="pole-7",
                        decision=Decision.from_config(config.decision))
    with pipeline:
        pipeline.run(source)
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .crops import CropWriter
from .decision import Decision, DecisionConfig, StateChange, scene_state
from .events import SummaryCounter, state_event, status_event, track_event
from .interfaces import Classifier, Detector, EventSink, Indicator, Preview
from .detector import Faces
from .mask_state import MaskRule
from .tracker import Track, Tracker

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    """What one frame produced."""

    index: int
    faces: Faces
    tracks: list[Track]
    state: str
    classified: int


@dataclass
class RunStats:
    frames: int = 0
    faces: int = 0
    classified: int = 0
    events: Counter = field(default_factory=Counter)
    publish_errors: int = 0  #: events a sink raised on (logged)
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


class Pipeline:
    """One camera's pipeline; ``process(frame)`` handles a frame, ``run(source)`` a whole stream."""

    def __init__(self, detector: Detector, classifier: Classifier | None, tracker: Tracker, indicator: Indicator,
                 events: EventSink, device_id: str, preview: Preview | None = None, summary_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, crops: CropWriter | None = None,
                 mask_rule: MaskRule | None = None, stale_after_s: float = 3.0, decision: Decision | None = None):
        self.detector, self.classifier, self.tracker = detector, classifier, tracker
        self.decision = decision or Decision.from_config(DecisionConfig())
        self.mask_rule = mask_rule or MaskRule()  #: how crop classifier and mask head make a face's label
        self.mask_rule.check_detector(getattr(detector, "labels", None), getattr(classifier, "labels", None),
                                   str(getattr(detector, "path", "the detector")))
        self.labels = list(classifier.labels if classifier is not None else detector.labels)
        self.indicator, self.events, self.preview = indicator, events, preview
        self.device_id, self.clock = device_id, clock
        self.crops = crops  #: only when the config asks: face crops are otherwise never written
        #: a saved crop is what the classifier reads: its box and margin; with no crop classifier, the box itself
        self.crop_margin = classifier.margin if classifier is not None else 0.0
        self.stats = RunStats()
        self.summary = SummaryCounter(summary_interval_s, device_id=device_id, clock=clock)
        self.stale_after_s = stale_after_s  #: seconds without a frame after which nobody counts as seen
        self._last_frame: float | None = None
        self._stale = False
        self._closed = False
        self._publish_failures: set[str] = set()

    def _publish(self, event: dict) -> None:
        """Hand ``event`` to the sinks. A sink that fails never stops detection or the outputs: the
        failure is counted (``stats.publish_errors``) and logged, in full the first time for each kind."""
        self.summary.add(event)
        self.stats.events[event["type"]] += 1
        try:
            self.events.publish(event)
        except Exception as exc:  # noqa: BLE001 - an unattended pole keeps detecting and signalling
            kind = type(exc).__name__  # by type: a message that varies must not log in full every time
            self.stats.publish_errors += 1
            if kind not in self._publish_failures:
                self._publish_failures.add(kind)
                log.exception("publishing a %s event failed; detection and outputs carry on", event["type"])

    def _track_event(self, kind: str, track: Track) -> None:
        self._publish(track_event(kind, track.id, track.label, round(track.label_score, 4), device_id=self.device_id))

    def _show(self, change: StateChange | None) -> None:
        """A new decision: the indicator shows it and a ``state`` event tells every sink."""
        if change is None:
            return
        self.indicator.set_state(change.state)
        self._publish(state_event(change.state, change.previous, device_id=self.device_id))

    def _end_tracks(self) -> None:
        """Every track ends: an ``end`` event for each that had a label, then none is left."""
        for track in list(self.tracker.tracks.values()):
            if track.label is not None:
                self._track_event("end", track)
        self.tracker.tracks.clear()

    def tick(self, now: float | None = None) -> None:
        """Called while no frame arrives (a stalled or lost camera, a reconnect back-off).

        Every tick lets the decision's timing run (a held alarm ends on time). After
        ``stale_after_s`` without a frame nobody counts as seen: every track ends (its ``end``
        event published), the decision asks for ``idle`` (all off; an alarm still inside its
        ``min_on_s`` ends when that has passed, at a later tick) and one ``status`` event
        ``no_frames`` says so. The next frame publishes ``frames_resumed``.
        """
        now = self.clock() if now is None else now
        if self._closed:
            return
        if self._last_frame is None or now - self._last_frame < self.stale_after_s:
            self._show(self.decision.tick(now))
            return
        if not self._stale:
            self._stale = True
            self._end_tracks()
            log.warning("no frame for %.1f s: tracks ended, outputs idle", now - self._last_frame)
            self._publish(status_event("no_frames", device_id=self.device_id,
                                       detail=f"no frame for {now - self._last_frame:.1f} s; outputs idle"))
        self._show(self.decision.request("idle", now))

    def process(self, frame) -> FrameResult:
        """Detect, track (classifying the faces due), decide, signal, publish and preview one frame."""
        now = self.clock()
        if self._stale:
            self._stale = False
            self._publish(status_event("frames_resumed", device_id=self.device_id,
                                       detail=f"after {now - self._last_frame:.1f} s without a frame"))
        self._last_frame = now
        faces = self.detector.detect(frame.image)
        update = self.tracker.step(faces.boxes, faces.scores, frame.index,
                                   classify=lambda due: self._classify(frame, faces, due))
        for kind, tracks in (("new", update.new), ("update", update.changed), ("end", update.ended)):
            for track in tracks:
                if track.label is not None:
                    self._track_event(kind, track)
        self._show(self.decision.request(scene_state(t.label for t in self.tracker.tracks.values()), self.clock()))
        if (summary := self.summary.poll()) is not None:
            self._publish(summary)
        if self.preview is not None:
            self.preview.show(frame, update.seen, self.decision.state, self.stats.fps)
        self.stats.frames += 1
        self.stats.faces += len(faces)
        self.stats.classified += len(update.classified)
        return FrameResult(frame.index, faces, update.seen, self.decision.state, len(update.classified))

    def _classify(self, frame, faces: Faces, due: list[Track]) -> list[tuple[str, float]]:
        """A label and its probability for each track of ``due``, by the mask rule; crops saved when asked."""
        boxes = np.stack([t.box for t in due])
        crop = self.classifier.classify_faces(frame.image, boxes) if self.mask_rule.needs_crop else None
        head = None if faces.mask is None else faces.mask[[t.detection for t in due]]
        labelled = []
        for track, p in zip(due, self.mask_rule.combine(crop, head, boxes)):
            best = int(p.argmax())
            labelled.append((self.labels[best], float(p[best])))
            if self.crops is not None:
                self.crops.save(frame, track, self.labels[best], self.crop_margin)
        return labelled

    def run(self, source, max_frames: int | None = None, stop=None, on_frame=None) -> RunStats:
        """Process frames until the source ends, ``max_frames`` is reached or ``stop`` is set."""
        started = self.clock()
        while (max_frames is None or self.stats.frames < max_frames) and not (stop and stop.is_set()):
            frame = source.read()
            if frame is None:
                break
            result = self.process(frame)
            self.stats.seconds = self.clock() - started
            if on_frame:
                on_frame(result)
        return self.stats

    def close(self) -> None:
        """End every track (publishing ``end``), then ``state`` idle, lights off, sinks flushed and closed.

        Idempotent. The outputs go off at once here, whatever the decision's hold time.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._end_tracks()
            if self.decision.state != "idle":
                self._publish(state_event("idle", self.decision.state, device_id=self.device_id))
        finally:
            for part in (self.indicator, self.events, self.preview):
                if part is not None:
                    try:
                        part.close()
                    except Exception:  # closing must reach every part; the first failure is logged
                        log.exception("closing %s failed", type(part).__name__)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
