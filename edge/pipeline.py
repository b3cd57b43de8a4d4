"""The frame's journey, top to bottom: source -> detect -> track (crop and classify the faces due) -> decide
-> signal/publish -> preview.

Everything the pipeline touches is injected (the face reader, tracker,
decision, indicator, event sink, preview), built once before the first frame.
The scene's state has one owner, the :class:`~maskwatch.edge.decision.Decision`:
when it changes the pipeline publishes a ``state`` event and shows it on the
indicator; the preview draws it and the MQTT sink turns it into its state topics.

Example::

    pipeline = Pipeline(FaceReader.from_config(config.detector, config.classifier),
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
from .interfaces import EventSink, Indicator, Preview
from .detector import Faces
from .face_reader import FaceReader
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

    def __init__(self, reader: FaceReader, tracker: Tracker, indicator: Indicator,
                 events: EventSink, device_id: str, preview: Preview | None = None, summary_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, crops: CropWriter | None = None,
                 stale_after_s: float = 3.0, decision: Decision | None = None):
        self.reader, self.tracker = reader, tracker
        self.decision = decision or Decision.from_config(DecisionConfig())
        self.labels = reader.labels
        self.indicator, self.events, self.preview = indicator, events, preview
        self.device_id, self.clock = device_id, clock
        self.crops = crops  #: only when the config asks: face crops are otherwise never written
        self.stats = RunStats()
        self.summary = SummaryCounter(summary_interval_s, device_id=device_id, clock=clock)
        self.stale_after_s = stale_after_s  #: seconds without a frame after which nobody counts as seen
        self._last_frame: float | None = None
        self._stale = False
        self._closed = False
        self._publish_failures: set[str] = set()
        self._schedules: dict[tuple[int, int], object] = {}  #: video tile schedule per frame size

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
        faces = self._detect(frame.image, now)
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

    def _detect(self, image, now: float) -> Faces:
        """Faces in a frame: with a tile budget (``detector.tiling.tiles_per_frame``) the schedule picks the
        windows, the tracker carrying faces between looks; without one, every tile, every frame."""
        size = (image.shape[1], image.shape[0])
        if size not in self._schedules:
            self._schedules[size] = self.reader.schedule(*size)
        schedule = self._schedules[size]
        if schedule is None:
            return self.reader.detect(image)
        return self.reader.detect(image, schedule.windows(image, [t.box for t in self.tracker.tracks.values()], now))

    def _classify(self, frame, faces: Faces, due: list[Track]) -> list[tuple[str, float]]:
        """A label and its probability for each track of ``due``, by the mask rule; crops saved when asked."""
        boxes, rows = np.stack([t.box for t in due]), [t.detection for t in due]
        head = None if faces.mask is None else faces.mask[rows]
        labelled = []
        for track, p in zip(due, self.reader.classify(frame.image, boxes, head, faces.landmarks[rows])[1]):
            best = int(p.argmax())
            labelled.append((self.labels[best], float(p[best])))
            if self.crops is not None:
                self.crops.save(frame, track, self.labels[best], self.reader.crop_margin)
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
