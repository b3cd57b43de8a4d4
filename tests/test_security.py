"""Security: MQTT over TLS with passwords and an ACL against a real Mosquitto, and the MJPEG preview's auth.

The MQTT tests make their own throw-away CA and broker certificate (openssl CLI), a Mosquitto password
file and ACL, and run a private Mosquitto with one TLS listener on a free port of 127.0.0.1
(``allow_anonymous false``) for this module, stopped after it; they skip when mosquitto, mosquitto_passwd
or openssl are missing. Users: ``pole-7`` may only write ``maskwatch/pole-7/#`` and ``homeassistant/#``;
``watcher`` may read ``#``.
"""
from __future__ import annotations

import http.client
import json
import os
import queue
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import free_port, next_message
from maskwatch.edge.errors import ConfigError
from maskwatch.edge.events import BrokerUnavailable, MqttConfig, MqttSink, track_event
from maskwatch.edge.preview import MjpegPreview
from maskwatch.edge.sources import Frame

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")

HOST = "127.0.0.1"


# --- a private TLS broker -------------------------------------------------------------------------

def tool(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                      None)


def run(*args: str, cwd: Path) -> None:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise AssertionError(f"{Path(args[0]).name} {args[1]} failed: {done.stderr.strip()[-500:]}")


def make_certs(folder: Path, openssl: str) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 and localhost it signed (P-256 keys)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=maskwatch test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    run(openssl, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=folder)
    (folder / "server.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                       "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(secrets.randbits(63)), "-days", "2", "-extfile", "server.ext", "-out", "server.crt",
        cwd=folder)
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class TlsBroker:
    port: int
    ca: Path
    passwords: dict[str, str]
    log: Path


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    binary, passwd, openssl = tool("mosquitto"), tool("mosquitto_passwd"), tool("openssl")
    missing = [n for n, p in (("mosquitto", binary), ("mosquitto_passwd", passwd), ("openssl", openssl)) if not p]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: the TLS broker tests need them "
                    f"(apt-get install mosquitto openssl)")
    folder = tmp_path_factory.mktemp("tls-broker")
    ca, cert, key = make_certs(folder, openssl)
    passwords = {"pole-7": secrets.token_urlsafe(16), "watcher": secrets.token_urlsafe(16)}
    run(passwd, "-b", "-c", str(folder / "passwd"), "pole-7", passwords["pole-7"], cwd=folder)
    run(passwd, "-b", str(folder / "passwd"), "watcher", passwords["watcher"], cwd=folder)
    (folder / "acl").write_text("user pole-7\ntopic write maskwatch/pole-7/#\ntopic write homeassistant/#\n\n"
                                "user watcher\ntopic read #\n")
    port = free_port()
    log = folder / "mosquitto.log"
    (folder / "mosquitto.conf").write_text("\n".join([
        "user root" if os.geteuid() == 0 else "",  # as root it would drop to 'mosquitto', who cannot read folder
        "per_listener_settings false",
        f"listener {port} {HOST}",
        f"cafile {ca}", f"certfile {cert}", f"keyfile {key}",
        "allow_anonymous false",
        f"password_file {folder / 'passwd'}",
        f"acl_file {folder / 'acl'}",
        "persistence false",
        f"log_dest file {log}",
        "log_type error", "log_type warning", "log_type notice", "log_type information",
        "log_type debug", "",
    ]))
    # Not daemonised (-d): a child process of the tests, so its end is certain and its exit status is seen.
    with open(folder / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen([binary, "-c", str(folder / "mosquitto.conf")], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                text = (folder / "stderr.log").read_text() + (log.read_text() if log.exists() else "")
                pytest.fail(f"mosquitto did not start on {HOST}:{port} (exit {proc.returncode}): {text[-800:]}")
            time.sleep(0.05)
        yield TlsBroker(port, ca, passwords, log)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Watcher:
    """The privileged subscriber: user ``watcher`` over TLS, every message on ``#`` (QoS 1)."""

    def __init__(self, broker: TlsBroker):
        self.messages: queue.Queue = queue.Queue()
        self.client = client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watcher-{uuid.uuid4().hex[:8]}")
        client.username_pw_set("watcher", broker.passwords["watcher"])
        client.tls_set(ca_certs=str(broker.ca))
        client.on_message = lambda c, u, message: self.messages.put(message)
        granted = queue.Queue()
        client.on_subscribe = lambda c, u, mid, codes, props: granted.put(codes)
        client.connect(HOST, broker.port, 30)
        client.subscribe("#", qos=1)
        client.loop_start()
        codes = granted.get(timeout=5)
        assert not any(code.is_failure for code in codes), f"watcher may not subscribe to #: {codes}"

    def next(self, topic: str, timeout: float = 5.0):
        """The next message on ``topic`` (others are skipped)."""
        return next_message(self.messages, topic, timeout)

    def drain(self, quiet_s: float = 0.3) -> list[str]:
        """Topics of every message received until none came for ``quiet_s``."""
        topics = []
        while True:
            try:
                topics.append(self.messages.get(timeout=quiet_s).topic)
            except queue.Empty:
                return topics

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watcher(tls_broker):
    made = Watcher(tls_broker)
    yield made
    made.close()


def pole_config(broker: TlsBroker, **changes) -> MqttConfig:
    values = dict(host=HOST, port=broker.port, tls=True, ca_file=broker.ca, username="pole-7",
                  password=broker.passwords["pole-7"], required=True, connect_timeout_s=2.0)
    values.update(changes)
    return MqttConfig(**{k: v for k, v in values.items() if v is not None})


# --- MQTT over TLS ----------------------------------------------------------------------------------

def test_tls_with_password_delivers_events(tls_broker, watcher):
    config = pole_config(tls_broker)
    assert tls_broker.passwords["pole-7"] not in repr(config)  # SecretStr: never in logs or reprs
    event = track_event("new", 1, "without_mask", 0.91, device_id="pole-7")
    with MqttSink(config, device_id="pole-7") as sink:
        assert sink.connected
        assert watcher.next("maskwatch/pole-7/availability").payload == b"online"
        sink.publish(event)
        got = watcher.next("maskwatch/pole-7/events")
        assert json.loads(got.payload) == event
    assert watcher.next("maskwatch/pole-7/availability").payload == b"offline"  # clean close


@pytest.mark.parametrize("username, password", [("pole-7", "wrong-password"), ("nobody", "x"), (None, None)],
                         ids=["wrong-password", "unknown-user", "anonymous"])
def test_bad_credentials_are_a_one_line_error(tls_broker, username, password):
    config = pole_config(tls_broker, username=username, password=password)
    if username is None:
        config = config.model_copy(update={"username": None, "password": None})
    with pytest.raises(BrokerUnavailable) as info:
        MqttSink(config, device_id="pole-7")
    message = str(info.value)
    assert "wrong-password" not in message  # never the password
    assert message == f"MQTT broker {HOST}:{tls_broker.port} did not accept the connection: Not authorized"


def test_plain_connection_to_the_tls_port_fails(tls_broker):
    """Mosquitto drops the plain CONNECT ('wrong version number'); the sink gives up after connect_timeout_s."""
    config = pole_config(tls_broker, tls=False, ca_file=None, connect_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as info:
        MqttSink(config, device_id="pole-7")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"MQTT broker {HOST}:{tls_broker.port} did not accept the connection: ")
    assert time.monotonic() - started < 5


def test_tls_checks_the_broker_certificate(tls_broker):
    """Without our CA (the system store), the throw-away broker certificate is refused before any password goes."""
    config = pole_config(tls_broker, ca_file=None)
    with pytest.raises(BrokerUnavailable) as info:
        MqttSink(config, device_id="pole-7")
    assert "certificate verify failed" in str(info.value) and "\n" not in str(info.value)


def test_acl_drops_publishes_outside_the_users_topics(tls_broker, watcher):
    """pole-7 sending as device pole-8: Mosquitto accepts the connection and PUBACKs (MQTT 3.1.1) but delivers nothing."""
    sink = MqttSink(pole_config(tls_broker), device_id="pole-8")
    try:
        assert sink.connected  # the ACL does not refuse the login, only the topics
        sink.publish(track_event("new", 1, "without_mask", 0.9, device_id="pole-8"))
    finally:
        sink.close()  # waits for the PUBACK of 'offline', sent after the event on the same connection
    # the ACL lets pole-7 write every homeassistant/# topic (discovery configs of any device name): not checked here
    leaked = [topic for topic in watcher.drain() if topic.startswith("maskwatch/pole-8/")]
    assert leaked == []
    # positive evidence that the event did reach the broker and was refused there (not lost on the way)
    log = tls_broker.log.read_text()
    assert "Denied PUBLISH from maskwatch-pole-8" in log and "'maskwatch/pole-8/events'" in log


# --- the MJPEG preview ------------------------------------------------------------------------------

def frame() -> Frame:
    image = np.zeros((120, 160, 3), np.uint8)
    image[30:90, 40:120] = (40, 180, 220)
    return Frame(image=image, index=0, timestamp=time.monotonic(), source="test")


class Camera:
    """Calls ``preview.show`` every 50 ms, as the pipeline does: a client gets the frame shown after it asked."""

    def __init__(self, preview: MjpegPreview):
        self.preview, self.stop = preview, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.preview.show(frame(), [], "idle", 15.0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


def read_first_part(response) -> tuple[dict[str, str], bytes]:
    """Headers and body of the first part of a multipart/x-mixed-replace response."""
    assert response.readline() == b"--frame\r\n"
    headers = {}
    while (line := response.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, response.read(int(headers["content-length"]))


def get(port: int, auth: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    conn.request("GET", "/", headers={"Authorization": auth} if auth else {})
    return conn.getresponse()


def test_mjpeg_preview_serves_jpeg_frames_and_releases_the_port():
    preview = MjpegPreview(host=HOST, port=free_port())
    port = preview.port
    try:
        response = get(port)
        assert response.status == 200
        assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
        with Camera(preview):
            headers, body = read_first_part(response)
        assert headers["content-type"] == "image/jpeg"
        assert body[:3] == b"\xff\xd8\xff" and body[-2:] == b"\xff\xd9"  # JPEG SOI ... EOI
        response.close()
    finally:
        preview.close()
    preview.close()  # idempotent
    assert not port_open(port)
    with socket.socket() as s:  # a restarted preview can bind the same port again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_mjpeg_preview_off_localhost_needs_a_password(host):
    with pytest.raises(ConfigError, match="password is required"):
        MjpegPreview(host=host, port=free_port())


def test_mjpeg_preview_password_is_http_basic_auth():
    password = secrets.token_urlsafe(12)
    preview = MjpegPreview(host=HOST, port=free_port(), password=password)
    try:
        basic = lambda user, pw: "Basic " + b64encode(f"{user}:{pw}".encode()).decode()  # noqa: E731
        for auth in (None, basic("maskwatch", "wrong"), basic("admin", password), "Bearer " + password):
            response = get(preview.port, auth)
            assert response.status == 401, auth
            assert response.getheader("WWW-Authenticate") == 'Basic realm="maskwatch"'
            response.close()
        response = get(preview.port, basic("maskwatch", password))
        assert response.status == 200
        with Camera(preview):
            assert read_first_part(response)[1][:3] == b"\xff\xd8\xff"
        response.close()
    finally:
        preview.close()
    assert not port_open(preview.port)


def test_mjpeg_preview_non_ascii_authorization_is_401():
    """A header with a byte past ASCII is refused like any wrong password, not a handler crash."""
    preview = MjpegPreview(host=HOST, port=free_port(), password="secret")
    try:
        with socket.create_connection((HOST, preview.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \xe9t\xe9\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.0 401"), reply[:100]
    finally:
        preview.close()
