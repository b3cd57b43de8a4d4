"""maskwatch run end to end: real models, real videos, gpiozero's MockFactory, a real Mosquitto."""
import json
import os
import signal
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from maskwatch.edge.app import build_pipeline, build_source, run
from maskwatch.edge.cli import main
from maskwatch.edge.config import load_config

#: Frames within which an unmasked person must sound the buzzer (K-of-N voting, reclassify cadence).
ALERT_WITHIN = 30


def run_clip(path, tmp_path, max_frames=None, **overrides):
    config = load_config(None, {"source.spec": str(path), "signal.backend": "mock", "device_id": "test-pole",
                                "events.jsonl": {"path": str(tmp_path / "events.jsonl")}, **overrides})
    seen = []
    pipeline = build_pipeline(config)
    buzzer_pin = pipeline.indicator.devices["buzzer"].pin
    with pipeline, build_source(config, pipeline) as source:
        pipeline.run(source, max_frames=max_frames,
                     on_frame=lambda r: seen.append((r.index, r.state, buzzer_pin.states[-1].state)))
    history = [state.state for state in buzzer_pin.states]  # after close: the pin's whole life
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    return seen, history, events


def test_sample_clip_runs_the_whole_pipeline(tmp_path):
    preview = tmp_path / "preview.mp4"
    config = load_config(None, {"signal.backend": "mock", "device_id": "test-pole", "preview.target": str(preview),
                                "events.jsonl": {"path": str(tmp_path / "events.jsonl")}})
    stats = run(config)
    assert stats.frames == 90 and stats.faces >= 85
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["type"], e.get("label") or f'{e["previous"]}->{e["state"]}') for e in events] == [
        ("new", "without_mask"), ("state", "idle->unmasked"), ("end", "without_mask"), ("state", "unmasked->idle")]
    assert preview.stat().st_size > 50_000


def test_unmasked_clip_sounds_the_buzzer_and_publishes_to_mqtt(data, tmp_path, broker):
    received = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-run-subscriber")
    client.on_message = lambda c, u, message: received.append(json.loads(message.payload))
    client.connect(*broker, 30)
    client.subscribe("maskwatch/test-pole/events", qos=1)
    client.loop_start()
    try:
        time.sleep(0.3)
        seen, history, events = run_clip(data / "videos" / "Gituatu_face-mask-detection__nomask.mp4", tmp_path,
                                         **{"events.mqtt": {"host": broker[0], "port": broker[1], "required": True}})
        deadline = time.time() + 5
        while time.time() < deadline and not any(e.get("type") == "new" for e in received):
            time.sleep(0.1)
    finally:
        client.loop_stop()
        client.disconnect()
    first_alarm = next(i for i, state, buzzer in seen if buzzer)
    assert first_alarm < ALERT_WITHIN
    news = [e for e in received if e["type"] == "new"]
    assert news and news[0]["label"] == "without_mask" and news[0]["device_id"] == "test-pole"
    assert [e["type"] for e in events].count("new") <= 2  # one person: one alert, not one per frame
    assert history[-1] is False  # off after the run


def test_masked_clip_never_sounds_the_buzzer(data, tmp_path):
    seen, history, events = run_clip(data / "videos" / "Gituatu_face-mask-detection__mask.mp4", tmp_path)
    assert len(seen) > 100
    assert not any(history), "the buzzer sounded for a masked person"
    assert any(e["type"] == "new" and e["label"] == "with_mask" for e in events)


def test_wrong_config_key_is_rejected_by_name(tmp_path, capsys):
    config = tmp_path / "maskwatch.toml"
    config.write_text("[tracker]\nvote_agre = 3\n")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tracker.vote_agre" in err and "maskwatch.toml" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1])
def test_sigterm_switches_everything_off_and_exits_0(data, tmp_path, sig):
    clip = data / "videos" / "Gituatu_face-mask-detection__nomask.mp4"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "maskwatch.edge.cli", "run", "--source", str(clip), "--gpio", "mock",
                                "--print-events"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in process.stdout:
            if '"type": "new"' in line:
                break
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err[-800:]
    buzzer = next(line for line in err.splitlines() if "(buzzer)" in line)
    assert " 1@" in buzzer and buzzer.rstrip().split(" ")[-1].startswith("0@"), buzzer
    assert f"signal {int(sig)}: stopping" in err


def test_doctor_reports_and_fails_on_what_the_config_needs(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ok   LiteRT: ai_edge_litert" in out or "ok   LiteRT: tflite_runtime" in out
    assert "ok   model retinaface_mask_mnv2_320_int8.tflite" in out
    assert main(["doctor", "--set", "detector.model=missing.tflite"]) == 1
    assert "FAIL model missing.tflite" in capsys.readouterr().out
    assert main(["doctor", "--set", "source.spec=/no/such/clip.mp4"]) == 1
    assert "FAIL source: /no/such/clip.mp4 not found" in capsys.readouterr().out


def test_no_face_image_is_written_unless_the_config_asks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written to a relative path would land here
    before = set(tmp_path.rglob("*"))
    run(load_config(None, {"signal.backend": "none", "device_id": "p"}), max_frames=12)
    assert set(tmp_path.rglob("*")) == before
    crops = tmp_path / "crops"
    run(load_config(None, {"signal.backend": "none", "device_id": "p", "privacy.save_crops": True,
                           "privacy.crops_dir": str(crops)}), max_frames=12)
    saved = sorted(crops.iterdir())
    assert saved and all(p.name.startswith("p_f") and p.suffix == ".jpg" for p in saved)


def test_run_tells_systemd_it_is_ready_and_alive(tmp_path, monkeypatch):
    import socket
    import threading

    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(0.5)
    messages, done = [], threading.Event()

    def drain():  # read while the run sends: a datagram socket's queue is short, a full one blocks the sender
        while not done.is_set():
            try:
                messages.append(server.recv(4096).decode())
            except socket.timeout:
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    try:
        run(load_config(None, {"signal.backend": "none", "device_id": "p"}), max_frames=30)
    finally:
        done.set()
        reader.join(5)
    try:  # what was sent as the run ended
        while True:
            messages.append(server.recv(4096).decode())
    except socket.timeout:
        pass
    finally:
        server.close()
    text = "\n".join(messages)
    assert "READY=1" in text and "WATCHDOG=1" in text and "STOPPING=1" in text


def test_a_file_preview_plays_at_the_source_frame_rate(data, tmp_path):
    import cv2

    clip = data / "videos" / "916241958_opencv_mask_detection__mask.mp4"
    source_fps = cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS)
    preview = tmp_path / "preview.mp4"
    config = load_config(None, {"source.spec": str(clip), "signal.backend": "mock", "preview.target": str(preview)})
    stats = run(config, max_frames=40)
    written = cv2.VideoCapture(str(preview))
    assert stats.frames == 40 and abs(written.get(cv2.CAP_PROP_FPS) - source_fps) < 0.5, source_fps
    assert written.get(cv2.CAP_PROP_FRAME_COUNT) == 40
    fixed = tmp_path / "fixed.mp4"
    run(load_config(None, {"source.spec": str(clip), "signal.backend": "mock", "preview.target": str(fixed),
                           "preview.fps": 10}), max_frames=10)
    assert abs(cv2.VideoCapture(str(fixed)).get(cv2.CAP_PROP_FPS) - 10) < 0.5


def test_a_video_with_no_readable_frame_is_a_one_line_error_not_a_silent_success(tmp_path, capsys):
    import cv2

    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()  # opens, holds no frame
    code = main(["run", "--source", str(empty), "--gpio", "mock"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1] == (f"maskwatch: error: {empty}: no frame could be read (an empty, truncated or unsupported "
                       "video, or no images)"), err[-1]


def test_sigterm_during_a_blocked_stream_open_ends_the_run_at_once(tmp_path):
    """A stream whose server accepts and never answers blocks OpenCV's open for its whole timeout (10 s)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(4)], daemon=True).start()
    child = subprocess.Popen([sys.executable, "-m", "maskwatch.edge.cli", "run", "--gpio", "none",
                              "--source", f"http://127.0.0.1:{server.getsockname()[1]}/stream"],
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not held and time.monotonic() < deadline:  # the open has reached the server and now waits
            time.sleep(0.05)
        assert held, "the stream was never opened"
        time.sleep(0.5)
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=15)
        took = time.monotonic() - sent
    finally:
        child.kill()
        server.close()
    assert child.returncode == 0, err
    assert took < 4, f"SIGTERM took {took:.1f} s to end the run"


def test_flags_override_only_the_keys_they_name(tmp_path):
    """--mqtt and --events set host/port and path; TLS, credentials, prefix, spool and rotation stay."""
    from maskwatch.edge.cli import build_parser
    from maskwatch.edge.commands.run import run_config

    config_file = tmp_path / "pole.toml"
    config_file.write_text(
        '[events.mqtt]\nhost = "broker.example"\ntls = true\nusername = "pole-7"\npassword = "secret"\n'
        f'topic_prefix = "city"\nspool_dir = "{tmp_path / "spool"}"\n'
        f'[events.jsonl]\npath = "{tmp_path / "old.jsonl"}"\nmax_bytes = 4096\nbackups = 2\n')
    argv = ["run", "--config", str(config_file), "--mqtt", "127.0.0.1:18830", "--events", str(tmp_path / "new.jsonl"),
            "--set", "events.mqtt.client_id=gate-2"]
    mqtt_config = run_config(build_parser(argv).parse_args(argv)).events
    assert (mqtt_config.mqtt.host, mqtt_config.mqtt.port) == ("127.0.0.1", 18830)
    assert mqtt_config.mqtt.tls and mqtt_config.mqtt.username == "pole-7"
    assert mqtt_config.mqtt.password.get_secret_value() == "secret"
    assert (mqtt_config.mqtt.topic_prefix, mqtt_config.mqtt.spool_dir) == ("city", tmp_path / "spool")
    assert mqtt_config.mqtt.client_id == "gate-2"
    assert (mqtt_config.jsonl.path, mqtt_config.jsonl.max_bytes, mqtt_config.jsonl.backups) == (
        tmp_path / "new.jsonl", 4096, 2)


def test_crops_are_saved_when_the_mask_head_alone_reads_the_faces(tmp_path):
    """Rule ``detector`` runs no crop classifier: the saved crop is the detector's box itself."""
    crops = tmp_path / "crops"
    run(load_config(None, {"signal.backend": "none", "device_id": "p", "classifier.rule": "detector",
                           "privacy.save_crops": True, "privacy.crops_dir": str(crops)}), max_frames=12)
    assert sorted(crops.iterdir())
