"""A live camera that goes away: the buzzer must not keep sounding for people no longer seen.

A real MJPEG stream over HTTP on 127.0.0.1 (the shipped photo of an unmasked face) is read by
``maskwatch.edge.app.run`` with gpiozero's own MockFactory as the pin factory. The stream serves,
then refuses connections for a few seconds, then serves again. The buzzer's whole pin history,
sampled and recorded, must show: on while the face is seen, off within ``stale_after_s`` (plus the
alarm's minimum on-time) after the last frame, off for the rest of the outage, on again after the
camera recovers, off at exit; and the ``status`` events must tell the story.
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import pytest

from maskwatch.edge.app import run
from maskwatch.edge.config import load_config
from maskwatch.edge.sample import sample_image

FPS = 20
FIRST_FRAMES = 40
OUTAGE_S = 3.5
STALE_AFTER_S = 1.0
MIN_ON_S = 0.5
BUZZER_PIN = 22
RED_PIN = 17


class Camera:
    """An MJPEG-over-HTTP camera: FIRST_FRAMES frames on the first connection, then HTTP 503 for
    OUTAGE_S seconds, then frames again until ``stop``."""

    def __init__(self):
        self.jpeg = cv2.imencode(".jpg", cv2.imread(str(sample_image())))[1].tobytes()
        self.connections, self.first_ended, self.stop = 0, None, threading.Event()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                camera.connections += 1
                first = camera.connections == 1
                if not first and time.monotonic() - camera.first_ended < OUTAGE_S:
                    self.send_error(503, "camera away")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                sent = 0
                while not camera.stop.is_set() and (not first or sent < FIRST_FRAMES):
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(camera.jpeg) + camera.jpeg + b"\r\n")
                    except OSError:
                        return
                    sent += 1
                    time.sleep(1 / FPS)
                if first:
                    camera.first_ended = time.monotonic()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mock_pins():
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    previous, Device.pin_factory = Device.pin_factory, MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = previous


def test_a_lost_camera_turns_the_alarm_off_and_recovery_turns_it_back_on(tmp_path, mock_pins):
    camera = Camera()
    events_path = tmp_path / "events.jsonl"
    config = load_config(None, {
        "source.spec": camera.url, "source.reconnect_backoff_s": [0.5], "source.stale_after_s": STALE_AFTER_S,
        "signal.backend": "gpiozero", "signal.red_pin": RED_PIN, "signal.buzzer_pin": BUZZER_PIN,
        "decision.min_on_s": MIN_ON_S, "decision.cooldown_s": 0.2, "device_id": "outage-pole",
        "events.jsonl": {"path": str(events_path)}})
    samples, done = [], threading.Event()

    def sample_buzzer():  # the pin as an observer sees it, with this clock's times
        pin = mock_pins.pin(BUZZER_PIN)
        while not done.is_set():
            samples.append((time.monotonic(), int(pin.state)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample_buzzer, daemon=True)
    sampler.start()
    try:
        stats = run(config, max_frames=FIRST_FRAMES + 40)
    finally:
        done.set()
        sampler.join()
        camera.close()
    assert stats.frames == FIRST_FRAMES + 40

    for pin in (BUZZER_PIN, RED_PIN):  # the buzzer and the red light tell the same story
        levels = [int(s.state) for s in mock_pins.pin(pin).states]
        changes = [level for i, level in enumerate(levels) if i == 0 or level != levels[i - 1]]
        assert changes == [0, 1, 0, 1, 0], (pin, levels)  # off, alarm, off while away, alarm again, off at exit

    lost_at = camera.first_ended
    during = [(t - lost_at, level) for t, level in samples if lost_at <= t <= lost_at + OUTAGE_S]
    off_at = next(t for t, level in during if level == 0)
    assert off_at <= STALE_AFTER_S + MIN_ON_S + 0.6, during   # off soon after the last frame
    assert all(level == 0 for t, level in during if t >= off_at), during  # and stays off while away

    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    story = [e["status"] if e["type"] == "status" else f"state {e['state']}" if e["type"] == "state"
             else f"{e['type']} {e['label']}" for e in events if e["type"] in ("status", "state", "new", "end")]
    assert story[0] == "new without_mask", story
    for expected in ("camera_lost", "no_frames", "camera_recovered", "frames_resumed"):
        assert expected in story, story
    assert story.index("end without_mask") < story.index("no_frames") < story.index("frames_resumed"), story
    assert "new without_mask" in story[story.index("frames_resumed"):], story  # the person is alerted on again
    # the state events tell the same story as the buzzer: alarm, idle during the outage, alarm, idle at exit
    assert [line for line in story if line.startswith("state")] == [
        "state unmasked", "state idle", "state unmasked", "state idle"], story
    assert story.index("no_frames") < story.index("state idle") < story.index("frames_resumed"), story
