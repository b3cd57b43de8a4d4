"""Building the runtime from one Config: the composition root of ``maskwatch run``.

Every part is built once, before the first frame; hardware and services
(camera, GPIO, broker) come from the config, so tests swap them by config
(mock GPIO, a local broker, a video file) rather than by patching code.
"""
from __future__ import annotations

import logging
import signal as signals
import threading

from .config import Config
from .crops import CropWriter
from .decision import Decision
from .deploy.watchdog import Watchdog
from .errors import InputError
from .events import open_sinks, status_event
from .face_reader import FaceReader
from .pipeline import Pipeline, RunStats
from .preview import VideoPreview, open_preview
from .gpio import Indicator
from .sources import Threaded, open_source, with_reconnect
from .tracker import Tracker

log = logging.getLogger(__name__)
#: Pins the mock GPIO uses when the config wires none (a common Pi HAT layout): red, green, buzzer.
MOCK_WIRING = {"red_pin": 17, "green_pin": 27, "buzzer_pin": 22}


class StoppedDuringStartup(BaseException):
    """A stop signal arrived while the run was still being built (raised by its handler, so that a
    blocking open returns); a BaseException, so no ``except Exception`` on the way swallows it."""


def build_pipeline(config: Config, print_events: bool = False) -> Pipeline:
    """Models, tracker, indicator, sinks and preview, all built before the first frame."""
    reader = FaceReader.from_config(config.detector, config.classifier, config.models_dir)
    signal_config = config.signal
    if signal_config.backend == "mock" and not signal_config.pins:
        signal_config = signal_config.model_copy(update=MOCK_WIRING)
        log.info("mock GPIO with the default wiring: red %(red_pin)d, green %(green_pin)d, buzzer %(buzzer_pin)d", MOCK_WIRING)
    parts = []
    crops = CropWriter(config.privacy.crops_dir, device_id=config.device_id) if config.privacy.save_crops else None
    try:
        indicator = Indicator(signal_config)
        parts.append(indicator)
        events = open_sinks(config.device_id, config.events.jsonl, config.events.mqtt, stdout=print_events)
        parts.append(events)
        preview = open_preview(config.preview.target, config.preview.password, config.preview.fps)
    except BaseException:
        for part in parts:
            part.close()
        raise
    return Pipeline(reader, Tracker(config.tracker), indicator, events, config.device_id,
                    preview=preview, summary_interval_s=config.events.summary_interval_s, crops=crops,
                    stale_after_s=config.source.stale_after_s,
                    decision=Decision.from_config(config.decision))


def build_source(config: Config, pipeline: Pipeline | None = None, stop: threading.Event | None = None,
                 on_wait=None):
    """The configured frame source; a live one reconnects with back-off and captures in its own thread
    (whose ``read()`` gives up when ``stop`` is set and calls ``on_wait(source)`` while it waits)."""
    section = config.source
    options = dict(section.options)
    if config.preview.target is None:  # Picamera2's main stream is copied only for a preview to draw on
        options.pop("preview_size", None)
    source = open_source(section.spec, width=section.width, height=section.height, fps=section.fps, **options)
    if not source.live:
        return source

    def on_state(state: str, detail: str) -> None:
        if pipeline is not None:
            pipeline.events.publish(status_event(f"camera_{state}", device_id=config.device_id, detail=detail))

    return Threaded(with_reconnect(source, backoff=section.reconnect_backoff_s, on_state=on_state,
                                   max_wait_s=section.max_wait_s),
                    stop=stop, on_wait=on_wait)


def source_fps(source) -> float | None:
    """The frame rate a source reports, looked for through its wrappers (threaded, reconnecting)."""
    for _ in range(4):
        rate = getattr(source, "fps", None)
        if isinstance(rate, (int, float)) and 0 < rate <= 240:
            return float(rate)
        source = getattr(source, "source", None)
    return None


def run(config: Config, max_frames: int | None = None, print_events: bool = False, on_frame=None):
    """Run until the source ends, ``max_frames``, SIGTERM or SIGINT; lights off and sinks closed on the way out."""
    stop = threading.Event()
    starting = True  # while parts are built, a signal must interrupt a blocked open (a FIFO, a dead share)

    def on_signal(number, _frame) -> None:
        log.info("signal %d: stopping", number)
        stop.set()
        if starting:
            raise StoppedDuringStartup(number)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signals.SIGTERM, signals.SIGINT, signals.SIGHUP, signals.SIGUSR1):  # all end the run cleanly
            previous[sig] = signals.signal(sig, on_signal)
    watchdog = Watchdog.from_env()  # systemd's notify socket; does nothing outside systemd

    def waiting(source) -> None:  # every 0.1 s without a frame
        pipeline.tick()  # nobody is seen while no frame comes: after source.stale_after_s the outputs go idle
        if source.reconnecting:  # alive on purpose while reconnecting, so keep systemd told
            watchdog.ping(status=f"no frame; reconnecting to {config.source.spec}")

    try:
        with build_pipeline(config, print_events) as pipeline:
            with build_source(config, pipeline, stop=stop, on_wait=waiting) as source:
                if isinstance(pipeline.preview, VideoPreview) and pipeline.preview.fps is None:
                    pipeline.preview.fps = source_fps(source)  # a file preview plays at the source's speed
                watchdog.ready(f"running on {config.source.spec}")

                def frame_done(result):
                    watchdog.ping(status=f"{pipeline.stats.frames} frames, {pipeline.stats.fps:.1f} fps")
                    if on_frame:
                        on_frame(result)

                starting = False
                stats = pipeline.run(source, max_frames=max_frames, stop=stop, on_frame=frame_done)
                if stats.frames == 0 and not source.live and max_frames != 0 and not stop.is_set():
                    raise InputError(f"{config.source.spec}: no frame could be read (an empty, truncated or "
                                     "unsupported video, or no images)")
                return stats
    except StoppedDuringStartup as exc:  # what was built is closed by the with blocks on the way out
        log.info("signal %d during start-up: stopped before the first frame", exc.args[0])
        return RunStats()
    finally:
        watchdog.stopping()
        for sig, handler in previous.items():
            signals.signal(sig, handler)
