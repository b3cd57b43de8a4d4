"""A hostile world (issue #21): values that try to escape the systemd unit, idle clients holding the
preview's threads, a full disk under the event log, images that decode to gigabytes, broken manifests.

Everything here is real: ``systemd-analyze`` on the written unit, real sockets against the preview
server, ``/dev/full`` (and a small tmpfs where mounting is allowed) under the JSONL log, a real
30000x30000 PNG decoded under a 2 GB address-space limit.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from base64 import b64encode
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import fill_disk, free_port, tmpfs
from maskwatch.edge.deploy import unit as unit_file
from maskwatch.edge.errors import ConfigError, InputError
from maskwatch.edge.events import JsonlConfig, JsonlSink, track_event
from maskwatch.edge.image import read_image
from maskwatch.edge.image_header import image_size
from maskwatch.edge.preview import MjpegPreview
from maskwatch.edge.sources import Frame

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
MASKWATCH = str(Path(sys.executable).parent / "maskwatch")          #: the installed console script
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                           reason="systemd-analyze absent (apt-get install systemd)")


# ---------------------------------------------------------------- the systemd unit

def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def service_lines(text: str, key: str) -> list[str]:
    return [line.partition("=")[2] for line in text.splitlines() if line.startswith(key + "=")]


@pytest.mark.parametrize("option, field, value", [
    ("--config", "config", Path("/etc/maskwatch/a.toml\nExecStartPre=/bin/sh -c id")),
    ("--exec", "exec_path", Path("/opt/mw/bin/maskwatch\rUser=root")),
    ("--state-dir", "state_dir", Path("/var/lib/mw\tx")),
    ("--models-dir", "models_dir", Path("/srv/models\nUser=root")),
])
def test_a_control_character_in_a_path_is_refused_naming_the_option(option, field, value):
    with pytest.raises(ConfigError, match=f"^{option} .*control characters") as err:
        unit_file.render_unit(unit_file.UnitSettings(**{field: value}))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("option, field, value", [
    ("--user", "user", "pole\nUser=root"),
    ("--user", "user", "root group"),
    ("--user", "user", "%u"),
    ("--user", "user", "-x"),
    ("--user", "user", "a" * 40),
    ("--groups", "groups", ("gpio", "video\nAmbientCapabilities=CAP_SYS_ADMIN")),
    ("--memory-max", "memory_max", "1G\nMemoryMax=infinity"),
    ("--memory-max", "memory_max", "lots"),
    ("--devices", "devices", ("char-video4linux rwm",)),
])
def test_accounts_sizes_and_devices_must_be_plain_values(option, field, value):
    with pytest.raises(ConfigError, match=f"^{option} ") as err:
        unit_file.render_unit(unit_file.UnitSettings(**{field: value}))
    assert "\n" not in str(err.value)


def test_the_cli_refuses_a_newline_in_config_in_one_line(tmp_path):
    done = subprocess.run([MASKWATCH, "service", "install", "--dry-run", "--unit-dir",
                           str(tmp_path), "--config", "/etc/mw.toml\nExecStartPre=/bin/sh"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "maskwatch: error: --config '/etc/mw.toml\\nExecStartPre=/bin/sh': control characters (newline, tab, ...) "
        "cannot go in a systemd unit"]
    assert list(tmp_path.iterdir()) == []


def test_specifiers_and_variables_are_escaped():
    text = unit_file.render_unit(unit_file.UnitSettings(exec_path=Path("/opt/mw/bin/maskwatch"),
                                                    config=Path("/etc/%h/$HOME a.toml"),
                                                    models_dir=Path("/srv/%u models"), state_dir=Path("/srv/%i")))
    assert service_lines(text, "ExecStart") == ['/opt/mw/bin/maskwatch run --config "/etc/%%h/$$HOME a.toml"']
    assert '"MASKWATCH_MODELS=/srv/%%u models"' in service_lines(text, "Environment")
    assert service_lines(text, "WorkingDirectory") == ["/srv/%%i"]
    assert service_lines(text, "ReadWritePaths") == ["/srv/%%i"]


@needs_systemd_analyze
def test_systemd_reads_an_escaped_path_back_as_written(tmp_path):
    """``verify`` checks that ExecStart's program exists: it only finds it if ``%h`` came back as ``%h``
    (not the home folder) and the quoted space held."""
    exe = executable(tmp_path / "my %h dir" / "maskwatch")
    unit = tmp_path / "maskwatch.service"
    unit.write_text(unit_file.render_unit(unit_file.UnitSettings(exec_path=exe, config=Path("/etc/%h/$HOME a.toml"))))
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0 and "maskwatch.service" not in done.stderr, done.stderr
    exe.unlink()                                 # and the check is real: without the program, verify says so
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert str(exe) in done.stderr


def exposure(unit: Path) -> float:
    done = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
                          capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


#: systemd-analyze security's score for the unit (0 safest, 10 unprotected); it was 5.8 before #21, 1.6 after.
MAX_EXPOSURE = 2.0


@needs_systemd_analyze
def test_unit_hardening_exposure(tmp_path):
    unit = tmp_path / "maskwatch.service"
    unit.write_text(unit_file.render_unit(unit_file.UnitSettings(exec_path=executable(tmp_path / "maskwatch"))))
    assert exposure(unit) <= MAX_EXPOSURE
    text = unit.read_text()
    for line in ("CapabilityBoundingSet=", "SystemCallFilter=@system-service", "SystemCallArchitectures=native",
                 "ProtectProc=invisible", "MemoryMax=1G", "MemoryDenyWriteExecute=yes", "DevicePolicy=closed",
                 "DeviceAllow=char-gpiochip rw", "DeviceAllow=char-video4linux rw", "DeviceAllow=char-dma_heap rw"):
        assert line in text.splitlines(), line
    assert "ProcSubset=pid" not in text.splitlines()   # gpiozero reads the Pi's revision from /proc/device-tree, /proc/cpuinfo


@needs_systemd_analyze
def test_service_install_options_reach_the_unit(tmp_path, capsys):
    from maskwatch.edge.cli import build_parser

    argv = ["service", "install", "--no-start", "--unit-dir", str(tmp_path), "--exec", str(executable(tmp_path / "mw")),
            "--memory-max", "600M", "--devices", "char-video4linux", "char-nvhost*"]
    args = build_parser(argv).parse_args(argv)
    assert args.handler(args) == 0
    text = (tmp_path / "maskwatch.service").read_text()
    assert service_lines(text, "MemoryMax") == ["600M"]
    assert service_lines(text, "DeviceAllow") == ["char-video4linux rw", "char-nvhost* rw"]
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(tmp_path / "maskwatch.service")], capture_output=True, text=True)
    assert done.returncode == 0 and "maskwatch.service" not in done.stderr, done.stderr
    argv = ["service", "install", "--dry-run", "--unit-dir", str(tmp_path), "--devices"]     # no device list at all
    args = build_parser(argv).parse_args(argv)
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "DevicePolicy" not in out and "DeviceAllow" not in out


def syscall_group(name: str) -> set[str]:
    """The system calls of a systemd ``@group``, nested groups expanded."""
    listing = subprocess.run([SYSTEMD_ANALYZE, "syscall-filter", name], capture_output=True, text=True, check=True)
    calls: set[str] = set()
    for line in listing.stdout.splitlines()[1:]:
        line = line.strip()
        if line.startswith("@"):
            calls |= syscall_group(line)
        elif line and not line.startswith("#"):
            calls.add(line)
    return calls


@needs_systemd_analyze
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace absent (apt-get install strace)")
def test_the_service_makes_only_system_calls_its_filter_allows(tmp_path):
    """Every system call of a run (both runtimes, the JSONL log, the MJPEG server, mock GPIO), traced with strace,
    is in the unit's SystemCallFilter: @system-service less @privileged."""
    text = unit_file.render_unit()
    assert service_lines(text, "SystemCallFilter") == ["@system-service", "~@privileged"]
    allowed = syscall_group("@system-service") - syscall_group("@privileged")
    used: set[str] = set()
    onnx = ["--set", "detector.model=retinaface_mask_mnv2_fp32.onnx", "--set", "classifier.model=mask_mnv2_96_fp32.onnx"]
    for n, extra in enumerate([[], onnx]):                         # LiteRT with XNNPACK, then ONNX Runtime
        summary = tmp_path / f"calls{n}.txt"
        done = subprocess.run(["strace", "-f", "-qq", "-c", "-o", str(summary), MASKWATCH, "run", "--gpio", "mock",
                               "--max-frames", "12", "--events", str(tmp_path / "e.jsonl"), "--preview",
                               f"http://127.0.0.1:{free_port()}", *extra], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = [line.split() for line in summary.read_text().splitlines()[2:]]
        used |= {row[-1] for row in rows if row and not row[0].startswith("-") and row[-1] != "total"}
    assert {"openat", "mmap", "futex"} <= used                     # the trace is real
    if os.geteuid() == 0:
        # ONNX Runtime keeps an SQLite file under ~/.cache/Microsoft; SQLite chowns its journal only when run
        # as root, and the service never runs as root (User=, CapabilityBoundingSet= empty).
        used.discard("fchown")
    assert used - allowed == set()


#: Run the CLI refusing writable-and-executable memory, as MemoryDenyWriteExecute=yes does (Linux >= 6.3).
MDWE_CLI = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:                  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit(78)                                     # not enforced: the test would prove nothing
except OSError:
    pass
from maskwatch.edge.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("model", ["retinaface_mask_mnv2_320_int8.tflite", "retinaface_mask_mnv2_fp32.onnx"])
def test_the_runtimes_need_no_writable_executable_memory(model, tmp_path):
    """The unit sets MemoryDenyWriteExecute=yes: LiteRT with XNNPACK, ONNX Runtime, NumPy and OpenCV must run
    without W+X memory (checked on this machine's architecture)."""
    done = subprocess.run([sys.executable, "-c", MDWE_CLI, "detect", "--model", model, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode == 77:
        pytest.skip("PR_SET_MDWE is not available (Linux before 6.3)")
    assert done.returncode == 0, done.stderr
    assert '"faces": [{' in done.stdout


# ---------------------------------------------------------------- the MJPEG preview server

HOST = "127.0.0.1"


def idle_client(port: int) -> socket.socket:
    """A connection that never sends its request."""
    return socket.create_connection((HOST, port), timeout=10)


def show_frames(preview: MjpegPreview, stop: threading.Event) -> None:
    image = np.full((48, 64, 3), 90, np.uint8)
    while not stop.wait(0.05):
        preview.show(Frame(image=image, index=0, timestamp=time.monotonic(), source="test"), [], "idle", 15.0)


def served(port: int, auth: str | None = None) -> tuple[int, bytes]:
    """Status and the first bytes of the body (the first MJPEG part when 200)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Authorization": auth} if auth else {})
        response = conn.getresponse()
        return response.status, response.read(64) if response.status != 200 else response.readline()
    finally:
        conn.close()


@pytest.fixture
def camera():
    """Starts showing frames on a preview until the test ends."""
    stop, threads = threading.Event(), []

    def start(preview: MjpegPreview) -> MjpegPreview:
        threads.append(threading.Thread(target=show_frames, args=(preview, stop), daemon=True))
        threads[-1].start()
        return preview

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


def test_idle_preview_connections_are_closed_after_the_request_timeout(camera):
    preview = camera(MjpegPreview(host=HOST, port=free_port(), request_timeout=0.5, max_clients=8))
    try:
        with ExitStack() as stack:
            idle = [stack.enter_context(idle_client(preview.port)) for _ in range(8)]
            for conn in idle:                            # the server hangs up: EOF, not our 10 s timeout
                assert conn.recv(1) == b""
        status, first = served(preview.port)
        assert (status, first) == (200, b"--frame\r\n")
    finally:
        preview.close()


def viewer(port: int) -> socket.socket:
    """A client that sent its whole request and then does not read the stream: it holds a slot."""
    conn = socket.create_connection((HOST, port), timeout=10)
    conn.sendall(b"GET / HTTP/1.1\r\nHost: pole\r\n\r\n")
    return conn


def test_preview_clients_past_the_cap_get_503_and_the_pole_still_serves(camera):
    preview = camera(MjpegPreview(host=HOST, port=free_port(), request_timeout=60, max_clients=3))
    try:
        with ExitStack() as stack:
            idle = [stack.enter_context(viewer(preview.port)) for _ in range(3)]
            time.sleep(0.5)                              # their requests are in: their slots are taken
            for _ in range(5):                           # every slot held: refused at once, not queued
                status, body = served(preview.port)
                assert (status, body) == (503, b"too many preview clients\n")
            idle[0].close()                              # one leaves: its slot comes back
            deadline = time.monotonic() + 10
            while (status := served(preview.port)[0]) == 503 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert status == 200
    finally:
        preview.close()


def test_preview_basic_scheme_is_case_insensitive(camera):
    preview = camera(MjpegPreview(host=HOST, port=free_port(), password="s3cret"))
    token = b64encode(b"maskwatch:s3cret").decode()
    try:
        for scheme in ("Basic", "basic", "BASIC", "bAsIc"):
            assert served(preview.port, f"{scheme} {token}") == (200, b"--frame\r\n"), scheme
        for auth in (f"basic {b64encode(b'maskwatch:wrong').decode()}", f"Bearer {token}", token, "basic"):
            assert served(preview.port, auth)[0] == 401, auth
    finally:
        preview.close()


# ---------------------------------------------------------------- the JSONL event log on a full disk

def events(n: int, start: int = 0) -> list[dict]:
    return [track_event("new", start + i, "with_mask", 0.97, device_id="pole-12") for i in range(n)]


def warnings_about(caplog, path: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and str(path) in r.getMessage()]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full absent")
def test_jsonl_on_dev_full_counts_losses_and_never_raises(caplog):
    caplog.set_level(logging.INFO, "maskwatch.edge.events.jsonl")
    sink = JsonlSink(JsonlConfig(path="/dev/full", max_bytes=100))  # never rotated: /dev/full is no regular file
    for event in events(20):
        sink.publish(event)
    assert (sink.lost, sink.written) == (20, 0)
    assert warnings_about(caplog, Path("/dev/full")) == [
        "/dev/full: cannot write events (No space left on device); counting the ones lost and trying again "
        "with each event"]
    sink.close()
    assert warnings_about(caplog, Path("/dev/full"))[-1] == "/dev/full: 20 events could not be written"
    assert os.path.exists("/dev/full") and not os.path.exists("/dev/full.1")


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs."""
    with tmpfs(tmp_path / "tiny", "64k") as folder:
        yield folder


def test_jsonl_on_a_full_tmpfs_loses_some_keeps_going_and_resumes(tiny_tmpfs, caplog):
    caplog.set_level(logging.INFO, "maskwatch.edge.events.jsonl")
    path = tiny_tmpfs / "events.jsonl"
    filler = fill_disk(tiny_tmpfs, leave=8192)          # room for a few dozen lines, then full mid-line
    sink = JsonlSink(JsonlConfig(path=path))
    for event in events(200):
        sink.publish(event)
    assert sink.lost > 0 and sink.written > 0 and sink.lost + sink.written == 200
    full = [json.loads(line) for line in path.read_text().splitlines()]   # no torn line: every one parses
    assert [e["track_id"] for e in full] == list(range(sink.written))
    assert len(warnings_about(caplog, path)) == 1
    filler.unlink()                               # space comes back: the next event gets in, by itself
    for event in events(50, start=1000):
        sink.publish(event)
    lost = sink.lost
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == sink.written and sink.written + lost == 250
    assert [e["track_id"] for e in lines[-50:]] == list(range(1000, 1050))
    assert f"{path}: writing events again ({lost} lost while it could not)" in caplog.messages


def unwritable_paths(tmp_path: Path) -> list[tuple[Path, str]]:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-folder").mkdir()
    paths = [(tmp_path / "a-folder", "is a directory"), (tmp_path / "a-file" / "e.jsonl", "Not a directory")]
    if os.path.isdir("/proc/self"):
        paths += [(Path("/proc/x.jsonl"), "No such file or directory"),
                  (Path("/proc/nope/x/e.jsonl"), "No such file or directory")]
    return paths


def test_an_unwritable_event_log_is_a_one_line_error_at_start(tmp_path):
    for path, reason in unwritable_paths(tmp_path):
        with pytest.raises(ConfigError) as err:
            JsonlSink(JsonlConfig(path=path))
        assert str(err.value) == f"{path}: cannot write the event log there ({reason})"
    assert not (tmp_path / "a-file" / "e.jsonl").exists()


def test_a_read_only_folder_is_a_one_line_error(tiny_tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    with pytest.raises(ConfigError, match=r"events.jsonl: cannot write the event log there \(Read-only file system\)$"):
        JsonlSink(JsonlConfig(path=tiny_tmpfs / "events.jsonl"))


def test_the_cli_refuses_a_directory_as_event_log_in_one_line(tmp_path):
    done = subprocess.run([MASKWATCH, "run", "--gpio", "mock", "--events", str(tmp_path), "--max-frames", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"maskwatch: error: {tmp_path}: cannot write the event log there " \
                                                   "(is a directory)"
    assert "Traceback" not in done.stderr


def test_a_failed_run_leaves_no_empty_event_log(tmp_path):
    path = tmp_path / "events.jsonl"
    JsonlSink(JsonlConfig(path=path)).close()     # no event, no file
    assert not path.exists()
    done = subprocess.run([MASKWATCH, "run", "--gpio", "mock", "--events", str(path), "--source",
                           str(tmp_path / "missing.mp4")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "missing.mp4" in done.stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- images that decode to gigabytes

def black_png(path: Path, width: int, height: int, rows_per_block: int = 1000) -> Path:
    """A valid 8-bit grey PNG of black pixels, written without ever holding it: one deflate block of
    ``rows_per_block`` zero rows, repeated (a full flush resets the dictionary, so each block is the same)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"\0" * ((width + 1) * rows_per_block)       # each row: filter byte 0, then its pixels
    comp = zlib.compressobj(9)
    first = comp.compress(rows) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(rows) + comp.flush(zlib.Z_FULL_FLUSH)
    blocks = height // rows_per_block
    assert blocks * rows_per_block == height
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(rows, adler)
    idat = first + block * (blocks - 1) + b"\x03\x00" + struct.pack(">I", adler)   # an empty final block
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """30000x30000 black pixels in under 1 MB: 900 MB decoded, 2.7 GB as BGR."""
    return black_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 30000, 30000)


def test_the_png_maker_makes_real_images(tmp_path):
    image = cv2.imread(str(black_png(tmp_path / "small.png", 300, 2000)), cv2.IMREAD_UNCHANGED)
    assert image.shape == (2000, 300) and image.max() == 0


def limited_memory() -> None:
    """preexec_fn: 2 GB of address space, so decoding the bomb would fail (or, unchecked, reach the OOM killer)."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_a_decompression_bomb_is_a_one_line_error_before_decoding(bomb):
    assert bomb.stat().st_size < 2_000_000
    with pytest.raises(InputError) as err:
        read_image(bomb)
    assert str(err.value) == (f"{bomb}: 30000x30000 pixels is more than the 50,000,000 an image may have "
                              "(set MASKWATCH_MAX_IMAGE_PIXELS to change it)")
    for command in (["detect", str(bomb), "--out", str(bomb.parent / "out")], ["classify", str(bomb)],
                    ["predict", str(bomb), "--jsonl", str(bomb.parent / "p.jsonl")]):
        done = subprocess.run([MASKWATCH, *command], capture_output=True, text=True, timeout=300,
                              preexec_fn=limited_memory)
        assert done.returncode == 2, (command, done.stderr[-2000:])
        assert done.stderr.strip().splitlines()[-1] == f"maskwatch: error: {err.value}", command
        assert "Traceback" not in done.stderr


def test_a_bomb_among_other_images_is_skipped_with_one_warning(bomb, tmp_path, sample_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_bomb.png").symlink_to(bomb)
    shutil.copy(sample_image, folder / "b_face.jpg")
    for command in (["detect", str(folder / "a_bomb.png"), str(folder / "b_face.jpg"), "--out", str(tmp_path / "out")],
                    ["classify", str(folder)]):
        done = subprocess.run([MASKWATCH, *command], capture_output=True, text=True, timeout=300,
                              preexec_fn=limited_memory)
        assert done.returncode == 1, done.stderr[-2000:]              # 1: some files were skipped
        warnings = [line for line in done.stderr.splitlines() if "a_bomb.png" in line]
        assert len(warnings) == 1 and "30000x30000 pixels" in warnings[0] and "(skipped)" in warnings[0], warnings
        assert "b_face.jpg" in done.stdout and "a_bomb.png" not in done.stdout


def test_a_bomb_in_an_image_source_is_skipped(bomb, tmp_path, sample_image, caplog):
    from maskwatch.edge.sources.images import ImageList

    (tmp_path / "a_bomb.png").symlink_to(bomb)
    shutil.copy(sample_image, tmp_path / "b_face.jpg")
    with ImageList(tmp_path) as images:
        frames = []
        while (frame := images.read()) is not None:
            frames.append(frame.source)
    assert frames == [str(tmp_path / "b_face.jpg")]
    assert [r.getMessage() for r in caplog.records if "a_bomb.png" in r.getMessage()][0].count("30000x30000") == 1


def test_the_pixel_cap_is_set_by_environment(tmp_path, monkeypatch):
    path = tmp_path / "twenty.png"
    cv2.imwrite(str(path), np.zeros((20, 20, 3), np.uint8))
    monkeypatch.setenv("MASKWATCH_MAX_IMAGE_PIXELS", "399")
    with pytest.raises(InputError, match="20x20 pixels is more than the 399 "):
        read_image(path)
    monkeypatch.setenv("MASKWATCH_MAX_IMAGE_PIXELS", "400")
    assert read_image(path).shape == (20, 20, 3)
    with pytest.raises(InputError, match="20x20 pixels is more than the 100 "):
        read_image(path, max_pixels=100)                           # a caller's own cap comes first
    monkeypatch.setenv("MASKWATCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="^MASKWATCH_MAX_IMAGE_PIXELS='lots': give a whole number"):
        read_image(path)


@pytest.mark.parametrize("ext, params", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                         (".bmp", []), (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
                                         (".tif", []), (".tif", [cv2.IMWRITE_TIFF_COMPRESSION, 1]), (".ppm", []),
                                         (".gif", [])])
@pytest.mark.parametrize("height, width, channels", [(1, 1, 3), (37, 53, 3), (17, 9, 4), (2000, 3, 3)])
def test_image_size_reads_each_formats_header(ext, params, height, width, channels):
    image = np.random.default_rng(1).integers(0, 255, (height, width, channels), dtype=np.uint8)
    if ext == ".ppm":
        image = image[..., :3]
    ok, data = cv2.imencode(ext, image, params)
    assert ok
    assert image_size(data.tobytes()) == (width, height)
    assert image_size(data.tobytes()[:5]) is None                  # a header cut short: size unknown


def test_an_image_without_a_readable_size_is_refused(tmp_path):
    path = tmp_path / "odd.jpg"
    path.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n")
    with pytest.raises(InputError, match="odd.jpg: not a readable image$"):   # Radiance HDR: its size is not read
        read_image(path)


# ---------------------------------------------------------------- a manifest entry without anchors or labels

DETECTOR, CLASSIFIER = "retinaface_mask_mnv2_320_int8.tflite", "mask_mnv2_96_int8.tflite"


def broken_manifest(folder: Path, entry: str, change) -> Path:
    """The shipped manifest's detector and classifier entries, one of them changed by ``change(entry_dict)``."""
    from maskwatch.edge.manifest import default_models_dir

    raw = json.loads((default_models_dir() / "manifest.json").read_text())
    raw["models"] = {name: raw["models"][name] for name in (DETECTOR, CLASSIFIER)}
    change(raw["models"][entry])
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(raw))
    return folder / "manifest.json"


@pytest.mark.parametrize("entry, change, message", [
    (DETECTOR, lambda e: e.pop("anchors"), "a face_detection entry needs anchors (min_sizes, steps, variances)"),
    (DETECTOR, lambda e: e.update(anchors=None), "a face_detection entry needs anchors (min_sizes, steps, variances)"),
    (DETECTOR, lambda e: e["anchors"].pop("steps"), "anchors need steps (lists)"),
    (DETECTOR, lambda e: e.pop("labels"), "a face_detection entry with mask outputs needs labels (one per output column)"),
    (CLASSIFIER, lambda e: e.pop("labels"), "a mask_classification entry needs labels"),
    (CLASSIFIER, lambda e: e.update(labels=[]), "a mask_classification entry needs labels"),
    (CLASSIFIER, lambda e: e.pop("sha256"), "sha256: Field required"),
])
def test_a_manifest_entry_without_what_it_needs_is_a_one_line_error(tmp_path, entry, change, message):
    from maskwatch.edge.errors import ModelError
    from maskwatch.edge.manifest import Manifest

    manifest = broken_manifest(tmp_path / "models", entry, change)
    expected = f"{manifest}: entry {entry!r}: {message}"
    with pytest.raises(ModelError) as err:
        Manifest.load(manifest.parent)
    assert str(err.value) == expected
    command = ["detect", "--models-dir", str(manifest.parent), "--out", str(tmp_path / "out")] if entry == DETECTOR \
        else ["classify", "--models-dir", str(manifest.parent), "--model", CLASSIFIER, str(tmp_path)]
    done = subprocess.run([MASKWATCH, *command], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == f"maskwatch: error: {expected}"
