"""Annotated preview: to a video file, or as MJPEG over HTTP for an installer aiming the camera.

Colours: green masked, red unmasked, orange incorrectly worn, grey not yet
decided; each box shows label, score and track id, and the frame its FPS.
The HTTP preview listens on 127.0.0.1 unless told otherwise; on any other
address it requires a password (HTTP basic auth, user ``maskwatch``).
"""
from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

from .decision import LABEL_STATE
from .errors import ConfigError

log = logging.getLogger(__name__)
#: BGR colour per scene state (and per track, by its label's state).
COLOURS = {"masked": (0, 200, 0), "unmasked": (0, 0, 230), "incorrect": (0, 140, 255), None: (160, 160, 160)}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def annotated(frame, tracks, state: str, fps: float) -> np.ndarray:
    """The frame's ``display`` picture when it has one (Picamera2's main stream), else its image, annotated."""
    if frame.display is None:
        return annotate(frame.image, tracks, state, fps)
    return annotate(frame.display, tracks, state, fps, box_scale=frame.display.shape[1] / frame.image.shape[1])


def annotate(image: np.ndarray, tracks, state: str, fps: float, box_scale: float = 1.0) -> np.ndarray:
    """A copy of ``image`` with each track's box (times ``box_scale``) and label, and the scene state."""
    out = image.copy()
    scale = max(0.9, max(out.shape[:2]) / 700)
    thickness = max(1, round(2 * scale))
    for track in tracks:
        colour = COLOURS[LABEL_STATE.get(track.label)]
        x1, y1, x2, y2 = (int(round(v * box_scale)) for v in track.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = f"#{track.id} {track.label or '?'} {track.label_score:.2f}" if track.label else f"#{track.id}"
        cv2.putText(out, text, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, colour, thickness)
    cv2.putText(out, f"{fps:5.1f} fps  {state}", (8, int(24 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX,
                0.7 * scale, COLOURS.get(state if state != "idle" else None, (255, 255, 255)), thickness)
    return out


#: Frame rate of a preview file when neither the config nor the source gives one.
DEFAULT_PREVIEW_FPS = 15.0


class VideoPreview:
    """Writes annotated frames to a video file (mp4v for .mp4, MJPG for .avi; browsers play neither:
    ``ffmpeg -i preview.mp4 -c:v libx264 preview-h264.mp4``). ``fps`` None: set ``fps`` before the
    first frame (the runtime gives it the source's rate), else :data:`DEFAULT_PREVIEW_FPS`."""

    def __init__(self, path: str | Path, fps: float | None = None):
        self.path, self.fps, self._writer = Path(path), fps, None

    def show(self, frame, tracks, state: str, fps: float) -> None:
        image = annotated(frame, tracks, state, fps)
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps or DEFAULT_PREVIEW_FPS,
                                           (image.shape[1], image.shape[0]))
            if not self._writer.isOpened():
                raise ConfigError(f"{self.path}: OpenCV cannot write this video file")
        self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


#: Seconds a preview client gets for each read or write (the request line, each header, each frame).
REQUEST_TIMEOUT_S = 10.0
#: Seconds a client gets to send its whole request (a header a byte at a time must not hold a thread).
REQUEST_HEAD_S = 5.0
#: Preview clients streaming at once; one more gets 503 and is closed.
MAX_CLIENTS = 8
#: Connections still sending their request, at once; past that a new one gets 503 and is closed,
#: without a thread. Each is closed after REQUEST_HEAD_S, so a flood of slow clients only delays.
MAX_PENDING = 32
#: Wrong passwords a client address may try before it must wait; each further one doubles the wait.
FREE_TRIES = 5
LOCKOUT_S, MAX_LOCKOUT_S = 1.0, 300.0
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 10\r\n"
         b"Connection: close\r\n\r\ntoo many preview clients\n")


class LoginThrottle:
    """Failed logins per client address: after ``FREE_TRIES`` wrong passwords the address waits
    ``LOCKOUT_S``, doubling with each further one up to ``MAX_LOCKOUT_S``; a right one clears it.
    Every failure is logged (the first ones in full, then one line per lockout)."""

    def __init__(self, clock=time.monotonic):
        self._clock, self._lock = clock, threading.Lock()
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}

    def wait_s(self, address: str) -> float:
        """Seconds ``address`` must still wait before a password is checked (0: go on)."""
        with self._lock:
            return max(0.0, self._locked_until.get(address, 0.0) - self._clock())

    def failed(self, address: str) -> None:
        with self._lock:
            n = self._failures[address] = self._failures.get(address, 0) + 1
            if len(self._failures) > 10_000:  # bounded memory, whatever the number of addresses
                self._failures.pop(next(iter(self._failures)))
            wait = 0.0 if n < FREE_TRIES else min(MAX_LOCKOUT_S, LOCKOUT_S * 2 ** (n - FREE_TRIES))
            if wait:
                self._locked_until[address] = self._clock() + wait
                if len(self._locked_until) > 10_000:
                    self._locked_until.pop(next(iter(self._locked_until)))
        log.warning("preview: wrong password from %s (%d in a row)%s", address, n,
                    f"; it waits {wait:g} s before the next try" if wait else "")

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
            self._locked_until.pop(address, None)


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_pending`` of them still sending their request (past that
    503 from the accepting thread, without a thread) and at most ``max_clients`` streaming."""

    daemon_threads = True

    def __init__(self, address, handler, max_clients: int, max_pending: int):
        self._pending = threading.BoundedSemaphore(max_pending)
        self.streams = threading.BoundedSemaphore(max_clients)
        self.max_clients, self._full = max_clients, False
        super().__init__(address, handler)

    def refuse(self, request, why: str) -> None:
        if not self._full:
            log.warning("preview: %s; refusing more with 503", why)
        self._full = True
        try:
            request.setblocking(False)   # a few bytes into an empty send buffer: never waits
            request.send(_BUSY)
        except OSError:
            pass

    def process_request(self, request, client_address):
        if not self._pending.acquire(blocking=False):
            self.refuse(request, "too many connections still sending their request")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._pending.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._pending.release()

    def streaming(self):
        """A streaming slot for a client whose whole request arrived (the caller releases it), or None."""
        if self.streams.acquire(blocking=False):
            self._full = False
            return self.streams
        return None


def _credentials(header: str) -> bytes | None:
    """The token of an ``Authorization: Basic TOKEN`` header; the scheme in any case (RFC 7235)."""
    scheme, _, token = header.strip().partition(" ")
    return token.strip().encode("latin-1", "replace") if scheme.lower() == "basic" else None


class MjpegPreview:
    """Serves the latest annotated frame as an MJPEG stream at ``http://HOST:PORT/``.

    Each client has ``request_timeout`` seconds for every read and write (an idle connection that sends
    no request, or stops reading the stream, is closed then) and ``head_timeout`` for its whole request;
    a streaming slot is taken only once the request has arrived: at most ``max_clients`` stream at once
    and one more gets ``503``. With a password, wrong ones are logged and slow down (:class:`LoginThrottle`:
    ``429`` with ``Retry-After`` while an address must wait).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, password: str | None = None, quality: int = 80,
                 request_timeout: float = REQUEST_TIMEOUT_S, max_clients: int = MAX_CLIENTS,
                 head_timeout: float = REQUEST_HEAD_S, max_pending: int = MAX_PENDING):
        if host not in LOCAL_HOSTS and not password:
            raise ConfigError(f"preview on {host}: a password is required off localhost (preview.password)")
        self.quality, self._jpeg, self._ready = quality, None, threading.Condition()
        expected = base64.b64encode(f"maskwatch:{password}".encode()) if password else None
        preview, throttle = self, LoginThrottle()
        self.throttle = throttle

        class Handler(BaseHTTPRequestHandler):
            timeout = request_timeout       # StreamRequestHandler sets it on the socket: every recv and send

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                # the whole request within head_timeout, however slowly its bytes come; do_GET cancels this
                self._head_timer = threading.Timer(head_timeout, self._hang_up)
                self._head_timer.daemon = True
                self._head_timer.start()

            def _hang_up(self):
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def finish(self):
                self._head_timer.cancel()
                super().finish()

            def do_GET(self):
                self._head_timer.cancel()
                address = self.client_address[0]
                if expected:
                    wait = throttle.wait_s(address)
                    if wait:
                        self.send_response(429)
                        self.send_header("Retry-After", str(math.ceil(wait)))
                        self.end_headers()
                        return
                    given = _credentials(self.headers.get("Authorization", ""))
                    if not (given is not None and hmac.compare_digest(given, expected)):
                        throttle.failed(address)
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="maskwatch"')
                        self.end_headers()
                        return
                    throttle.succeeded(address)
                slot = self.server.streaming()
                if slot is None:
                    self.server.refuse(self.connection, f"{self.server.max_clients} clients already streaming")
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                    self.end_headers()
                    while True:
                        jpeg = preview.next_jpeg(timeout=5)
                        if jpeg is None:
                            return
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                        self.wfile.write(jpeg + b"\r\n")
                except OSError:                  # gone, reset, or not reading for request_timeout
                    return
                finally:
                    slot.release()

        try:
            self._server = _BoundedServer((host, port), Handler, max_clients, max_pending)
        except OSError as exc:  # the port in use, or an address this host does not have
            raise ConfigError(f"preview http://{host}:{port}/: cannot listen there ({exc.strerror or exc})") from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="mjpeg-preview", daemon=True)
        self._thread.start()
        log.info("preview at http://%s:%d/", host, self.port)

    def next_jpeg(self, timeout: float) -> bytes | None:
        with self._ready:
            self._ready.wait(timeout)
            return self._jpeg

    def show(self, frame, tracks, state: str, fps: float) -> None:
        ok, data = cv2.imencode(".jpg", annotated(frame, tracks, state, fps), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._ready:
                self._jpeg = data.tobytes()
                self._ready.notify_all()

    def close(self) -> None:
        if self._server is not None:
            with self._ready:
                self._jpeg = None
                self._ready.notify_all()
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def open_preview(target: str | None, password: str | None = None, fps: float | None = None):
    """``None``, a video file path, or ``http://HOST:PORT`` (MJPEG server)."""
    if not target:
        return None
    if target.startswith("http://"):
        url = urlparse(target)
        return MjpegPreview(url.hostname or "127.0.0.1", url.port or 8080, password)
    return VideoPreview(target, fps)
