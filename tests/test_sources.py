"""Frame sources on real clips from ../shared/data/videos and real image files written here."""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time

import cv2
import numpy as np
import pytest

from conftest import free_port

from maskwatch.edge.errors import ConfigError, RuntimeUnavailable
from maskwatch.edge.sources import (Frame, Reconnecting, Source, SourceError, SourceLost, Threaded, open_source, source_kind,
                          with_reconnect)
from maskwatch.edge.sources.images import ImageList
from maskwatch.edge.sources.opencv import Camera, OpenCVSource, Stream, VideoFile

#: the smallest clip: 388x218, 234 frames at 25 fps
CLIP = "916241958_opencv_mask_detection__mask.mp4"


@pytest.fixture(scope="module")
def clip(data):
    path = data / "videos" / CLIP
    if not path.is_file():
        pytest.skip(f"{path} absent")
    return path


@pytest.fixture(scope="module")
def clip_frames(clip) -> list[np.ndarray]:
    """Every frame of the clip, decoded straight through OpenCV."""
    capture, frames = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG), []
    while (got := capture.read())[0]:
        frames.append(got[1])
    capture.release()
    assert len(frames) > 100
    return frames


def test_video_file_yields_every_frame_in_order_then_none(clip, clip_frames):
    source = open_source(str(clip))
    assert isinstance(source, VideoFile) and isinstance(source, Source) and not source.live
    with pytest.raises(SourceError, match="before open"):
        source.read()
    with source:
        assert source.fps == pytest.approx(25, abs=1)
        frames = list(source)
        assert source.read() is None  # stays ended
    source.close()  # idempotent
    assert [f.index for f in frames] == list(range(len(clip_frames)))
    assert all(f.image.shape == (218, 388, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.source == str(clip) for f in frames)
    assert all(a.timestamp <= b.timestamp for a, b in zip(frames, frames[1:]))
    np.testing.assert_array_equal(frames[-1].image, clip_frames[-1])


def test_a_frame_of_another_type_is_converted(clip):
    # Without RGB conversion FFmpeg hands over the grey luma plane: to_bgr8 makes it BGR.
    with VideoFile(str(clip), props={cv2.CAP_PROP_CONVERT_RGB: 0}) as grey:
        frame = grey.read()
    assert frame.image.shape == (218, 388, 3) and frame.image.dtype == np.uint8
    assert (frame.image[..., 0] == frame.image[..., 2]).all()


def test_a_frame_of_another_size_is_skipped(tmp_path, caplog):
    # OpenCV's own image-sequence capture over files whose second one is larger.
    for i, (h, w) in enumerate([(20, 30), (25, 30), (20, 30)]):
        cv2.imwrite(str(tmp_path / f"s{i:03d}.png"), np.full((h, w, 3), 50 * i, np.uint8))
    with caplog.at_level(logging.WARNING), OpenCVSource(str(tmp_path / "s%03d.png"), api=cv2.CAP_IMAGES) as seq:
        frames = list(seq)
    assert [(f.index, f.image[0, 0, 0]) for f in frames] == [(0, 0), (1, 100)]
    assert "frame skipped: 30x25, the stream is 30x20" in caplog.text


def test_image_folder_and_glob_skip_an_unreadable_file(tmp_path, caplog):
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    ramp = np.linspace(0, 255, 48 * 64, dtype=np.uint8).reshape(48, 64)
    frame = np.dstack([ramp, ramp[::-1], ramp.T.reshape(48, 64)])
    cv2.imwrite(str(folder / "a.png"), frame)
    cv2.imwrite(str(folder / "b_grey.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    cv2.imwrite(str(folder / "d_16bit.png"), frame.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "more" / "e_alpha.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    (folder / "notes.txt").write_text("not an image")

    source = open_source(str(folder))
    assert isinstance(source, ImageList) and not source.live
    with caplog.at_level(logging.WARNING), source:
        frames = list(source)
        assert source.read() is None
    assert [os.path.basename(f.source) for f in frames] == ["a.png", "b_grey.png", "d_16bit.png", "e_alpha.png"]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert all(f.image.shape == frame.shape and f.image.dtype == np.uint8 for f in frames)
    np.testing.assert_array_equal(frames[2].image, frame)  # 16-bit scaled back to 8
    assert "c_broken.jpg" in caplog.text and "skipped" in caplog.text

    with open_source(str(folder / "*.png")) as pngs:
        assert [os.path.basename(f.source) for f in pngs] == ["a.png", "b_grey.png", "d_16bit.png"]
    with open_source(str(folder / "a.png")) as single:
        assert len(list(single)) == 1
    with pytest.raises(SourceError, match=r"\*\.gif: no image files"):
        open_source(str(folder / "*.gif")).open()


def test_spec_chooses_the_source(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    cv2.imwrite(str(tmp_path / "one.jpg"), np.zeros((8, 8, 3), np.uint8))
    clip = tmp_path / "clip.MKV"  # chosen by its suffix; not opened here
    clip.write_bytes(b"")
    kinds = {"0": "camera", "/dev/video2": "camera", "/dev/v4l/by-id/usb-cam-video-index0": "camera",
             "rtsp://user:secret@10.0.0.5:554/stream1": "stream", "http://cam.local/mjpeg": "stream",
             "https://cam.local/live.m3u8": "stream", "picamera2": "picamera2", str(clip): "video",
             str(tmp_path): "images", str(tmp_path / "*.jpg"): "images", str(tmp_path / "one.jpg"): "images"}
    assert {spec: source_kind(spec) for spec in kinds} == kinds

    camera = open_source("0", width=640, height=480, fps=15)  # built, not opened: no camera needed
    assert isinstance(camera, Camera) and camera.target == 0 and camera.live
    assert camera.props[cv2.CAP_PROP_FRAME_WIDTH] == 640 and camera.props[cv2.CAP_PROP_FPS] == 15
    assert open_source("/dev/video2").api == cv2.CAP_V4L2
    stream = open_source("rtsp://user:secret@10.0.0.5:554/stream1", timeout=2)
    assert isinstance(stream, Stream) and stream.live and "secret" not in stream.name
    assert open_source(str(clip), live=True).live

    with pytest.raises(SourceError, match="no-such-clip.mp4: no such camera"):
        open_source(str(tmp_path / "no-such-clip.mp4"))
    with pytest.raises(SourceError, match="notes.txt: not a video"):
        open_source(str(tmp_path / "notes.txt"))
    with pytest.raises(ConfigError, match="option width does not apply to video"):
        open_source(str(clip), width=640)
    assert not open_source(str(clip), width=None, height=None, fps=None).live  # None counts as not given
    with pytest.raises(IOError):  # SourceError is also a builtin IOError
        open_source("nowhere")


def test_picamera2_missing_is_a_clear_error():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed here")
    with pytest.raises(RuntimeUnavailable, match="python3-picamera2"):
        open_source("picamera2", width=320, height=240)


def test_a_camera_that_vanishes_is_reported_lost_then_recovered(clip, clip_frames, tmp_path, caplog):
    """A live capture on a file that is emptied mid-stream (reads fail, reopening fails) and restored."""
    path = tmp_path / "camera.mp4"
    shutil.copy(clip, path)
    states, delays = [], []

    def sleep(seconds):  # no waiting; the camera comes back during the second wait
        delays.append(seconds)
        if len(delays) == 2:
            shutil.copy(clip, path)

    source = with_reconnect(open_source(str(path), live=True), on_state=lambda *s: states.append(s), sleep=sleep)
    assert isinstance(source, Reconnecting)
    frames = []
    with caplog.at_level(logging.INFO), source:
        frames += [source.read() for _ in range(10)]
        os.truncate(path, 0)  # the camera stops delivering; a few buffered frames still come
        while not states or states[-1][0] != "recovered":
            frames.append(source.read())
            assert len(frames) < len(clip_frames), "the loss should come before the clip ends"
        frames += [source.read() for _ in range(5)]

    assert [s for s, _ in states] == ["lost", "recovered"]
    assert "capture failed" in states[0][1] and "after 2 attempts" in states[1][1]
    assert delays == [1, 2]
    assert [f.index for f in frames] == list(range(len(frames)))  # numbering carries on across the loss
    restart = len(frames) - 6  # the first frame after recovery is the clip's first again
    np.testing.assert_array_equal(frames[restart].image, clip_frames[0])
    np.testing.assert_array_equal(frames[restart - 1].image, clip_frames[restart - 1])
    assert "camera lost" in caplog.text and "camera recovered" in caplog.text


def test_reconnecting_gives_up_after_max_attempts_and_files_are_not_wrapped(tmp_path):
    delays = []
    gone = Reconnecting(VideoFile(str(tmp_path / "unplugged.mp4"), live=True), sleep=delays.append, max_attempts=3)
    with gone, pytest.raises(SourceError, match="gave up after 3 attempts"):
        gone.read()
    assert delays == [1, 2, 4]
    plain = VideoFile(str(tmp_path / "clip.mp4"))
    assert with_reconnect(plain) is plain


def test_a_truncated_video_is_read_to_its_cut_and_said_so(tmp_path, caplog):
    path = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(60):
        writer.write(np.full((120, 160, 3), i * 4, np.uint8))
    writer.release()
    with caplog.at_level(logging.WARNING), open_source(str(path)) as whole:
        assert len(list(whole)) == 60
    assert "truncated" not in caplog.text
    os.truncate(path, path.stat().st_size * 6 // 10)
    with caplog.at_level(logging.WARNING), open_source(str(path)) as cut:
        frames = len(list(cut))
    assert 10 < frames < 60
    assert f"ended after {frames} of the 60 frames its header gives (truncated or damaged?)" in caplog.text


def test_a_camera_never_seen_is_said_so_and_max_wait_gives_up(tmp_path, caplog):
    states = []
    gone = Reconnecting(VideoFile(str(tmp_path / "never.mp4"), live=True), backoff=(0.2,),
                        on_state=lambda *state: states.append(state), max_wait_s=0.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), gone, pytest.raises(SourceError, match=r"no frame for \d+ s \(max_wait_s 0.5\)"):
        gone.read()
    assert 0.5 <= time.monotonic() - started < 2
    assert [state for state, _ in states] == ["never_seen"]  # not "lost": it was never there
    assert "has not delivered a frame since start" in caplog.text and "camera lost" not in caplog.text


def test_run_with_max_wait_gives_up_in_one_line(tmp_path, capsys):
    from maskwatch.edge.cli import main

    code = main(["run", "--source", f"rtsp://127.0.0.1:{free_port()}/none", "--gpio", "none", "--max-wait", "1",
                 "--events", str(tmp_path / "events.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "no frame for" in err and "Traceback" not in err
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e.get("status") for e in events] == ["camera_never_seen"]


def test_close_from_another_thread_stops_a_reconnect_wait(tmp_path):
    gone = Reconnecting(VideoFile(str(tmp_path / "unplugged.mp4"), live=True), backoff=(30,))
    result = []
    with gone:
        reader = threading.Thread(target=lambda: result.append(gone.read()))
        reader.start()
        time.sleep(0.2)
        started = time.monotonic()
        gone.close()
        reader.join(5)
    assert not reader.is_alive() and result == [None] and time.monotonic() - started < 2


def capture_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("capture ")]


def test_threaded_delivers_every_frame_of_a_file_in_order(clip, clip_frames):
    source = Threaded(open_source(str(clip)), queue_size=2)
    with source:
        assert len(capture_threads()) == 1
        frames = list(source)
    assert [f.index for f in frames] == list(range(len(clip_frames)))
    assert isinstance(frames[0], Frame) and source.dropped == 0
    np.testing.assert_array_equal(frames[-1].image, clip_frames[-1])
    assert capture_threads() == [] and source.read() is None


def test_threaded_live_source_keeps_the_newest_frames_and_closes(clip):
    # A live capture of a file that Reconnecting replays forever: a camera that never stops.
    loop = with_reconnect(open_source(str(clip), live=True), sleep=lambda s: None)
    source = Threaded(loop, queue_size=2)
    with source:
        time.sleep(0.3)  # a slow consumer: the capture runs ahead
        frames = [source.read() for _ in range(3)]
    assert source.dropped > 0 and frames[0].index > 0
    assert frames[0].index < frames[1].index < frames[2].index
    assert capture_threads() == [] and source.read() is None


def test_threaded_hands_on_the_capture_error(clip, clip_frames):
    """A live capture without Reconnecting: its loss reaches the reader after the frames before it."""
    with Threaded(open_source(str(clip), live=True), queue_size=len(clip_frames) + 1) as source:
        frames = []
        with pytest.raises(SourceLost, match=f"capture failed after {len(clip_frames)} frames"):
            while True:
                frames.append(source.read())
        assert source.read() is None
    assert len(frames) == len(clip_frames)
    with pytest.raises(SourceError, match="cannot open"):
        Threaded(VideoFile("missing.mp4")).open()  # opening fails here, before any thread starts
