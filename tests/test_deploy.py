"""Deployment: the sd_notify watchdog, the systemd unit, and a real offline bundle installed and run.

The bundle test downloads the runtime wheels for linux-x86_64-py311 (pip's cache keeps them) and
skips with the reason when the package index cannot be reached. It then installs the bundle with
install.sh into a temp prefix with pip cut off from any index, runs the installed ``maskwatch``, and
checks that a changed or added file stops install.sh before anything is written.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from maskwatch.edge.deploy import DeployError
from maskwatch.edge.deploy import service
from maskwatch.edge.deploy import unit as unit_file
from maskwatch.convert.bundle.build import DEFAULT_CONFIG, build_bundle
from maskwatch.convert.bundle.targets import TARGETS
from maskwatch.edge.deploy.watchdog import Watchdog, notify, notify_address, watchdog_period

REPO = Path(__file__).resolve().parents[1]
NO_TOOLCHAIN = REPO / "tests" / "no_toolchain.py"
TARGET = "linux-x86_64-py311"
TIMINGS: dict[str, float] = {}


# ---------------------------------------------------------------- watchdog (sd_notify)

@pytest.fixture
def notify_socket(tmp_path):
    """A real AF_UNIX datagram socket, as systemd binds for NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def received(sock) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return messages


def test_notify_sends_datagrams_to_a_path_socket(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify("READY=1\nSTATUS=loading done")
    assert sock.recv(4096) == b"READY=1\nSTATUS=loading done"


def test_notify_reaches_an_abstract_socket(monkeypatch):
    name = f"maskwatch-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        assert notify_address("@" + name) == b"\0" + name.encode()
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_notify_gives_up_on_a_receiver_that_does_not_read(notify_socket, caplog):
    path, sock = notify_socket
    queued = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())  # Linux: 10 unless tuned
    started = time.monotonic()
    sent = [notify("WATCHDOG=1", path) for _ in range(queued + 2)]  # nobody reads
    assert all(sent[:5]) and not sent[-1] and time.monotonic() - started < 5
    assert "sd_notify 'WATCHDOG=1'" in caplog.text and "failed" in caplog.text


def test_watchdog_protocol_rate_limited(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    now = [100.0]
    dog = Watchdog.from_env(clock=lambda: now[0])
    assert dog.active and dog.period == 30 and dog.interval == 15
    assert dog.ready("2 models loaded")
    assert sock.recv(4096) == b"READY=1\nSTATUS=2 models loaded"
    sent = []
    for _ in range(100):                 # 100 frames at 10 fps = 10 s: under half the period, no ping
        now[0] += 0.1
        sent.append(dog.ping())
    assert not any(sent) and received(sock) == []
    now[0] += 5.1                        # 15.1 s since READY
    assert dog.ping(status="12.0 fps")
    assert sock.recv(4096) == b"WATCHDOG=1\nSTATUS=12.0 fps"
    assert not dog.ping()                # right after a ping: nothing
    now[0] += 15
    assert dog.ping() and sock.recv(4096) == b"WATCHDOG=1"
    assert dog.status("camera lost") and sock.recv(4096) == b"STATUS=camera lost"
    assert dog.stopping() and sock.recv(4096) == b"STOPPING=1"
    assert dog.sent == 5


def test_watchdog_does_nothing_outside_systemd(notify_socket, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    dog = Watchdog.from_env()
    assert not dog.active and dog.period is None
    assert not dog.ready() and not dog.ping() and not dog.stopping()
    # notifications on but no watchdog (no WatchdogSec): ready is sent, pings are not
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC")
    dog = Watchdog.from_env()
    assert dog.ready() and sock.recv(4096) == b"READY=1"
    assert not dog.ping()


def test_a_missing_camera_keeps_the_watchdog_fed_and_sigterm_still_stops_the_run(notify_socket, monkeypatch, tmp_path):
    """Under systemd with a 1 s watchdog, a camera that is not there: the run waits in its reconnect
    back-off, pings with a status that says so (rather than being killed as hung), and SIGTERM ends it."""
    import signal
    import threading

    from maskwatch.edge.app import run
    from maskwatch.edge.config import load_config

    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    config = load_config(None, {"source.spec": "/dev/video99",
                                "source.reconnect_backoff_s": [30], "signal.backend": "mock",
                                "events.jsonl": {"path": str(tmp_path / "events.jsonl")}})
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.monotonic()
    try:
        stats = run(config)
    finally:
        timer.cancel()
    assert stats.frames == 0 and time.monotonic() - started < 6  # not 30 s: SIGTERM cut the back-off short
    messages = received(sock)
    assert messages[0].startswith("READY=1") and messages[-1].startswith("STOPPING=1")
    pings = [m for m in messages if m.startswith("WATCHDOG=1")]
    assert len(pings) >= 3, messages  # every 0.5 s over about 2 s
    assert all("no frame; reconnecting to /dev/video99" in m for m in pings)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["status"] for e in events if e["type"] == "status"][:1] == ["camera_never_seen"]


def test_watchdog_for_another_process_or_bad_values_is_off():
    assert watchdog_period({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None  # meant for PID 1
    assert watchdog_period({"WATCHDOG_USEC": "nonsense"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "20000000"}) == 20
    assert notify_address("relative/path") is None and notify_address("") is None


def test_a_vanished_socket_is_logged_not_raised(tmp_path, caplog):
    assert notify("READY=1", str(tmp_path / "gone")) is False
    assert "sd_notify" in caplog.text


# ---------------------------------------------------------------- the systemd unit

def unit_keys(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def test_unit_text():
    unit = unit_keys(unit_file.render_unit(unit_file.UnitSettings()))
    s, u = unit["Service"], unit["Unit"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert s["ExecStart"] == ["/opt/maskwatch/venv/bin/maskwatch run --config /etc/maskwatch/maskwatch.toml"]
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"] and s["WatchdogSec"] == ["30"]
    assert s["Restart"] == ["on-failure"] and int(s["RestartSec"][0]) > 0
    assert int(u["StartLimitBurst"][0]) > 0 and int(u["StartLimitIntervalSec"][0]) > 0
    assert s["User"] == ["maskwatch"] and s["SupplementaryGroups"] == ["gpio video"]
    assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"] and s["PrivateTmp"] == ["yes"]
    assert s["ReadWritePaths"] == ["/var/lib/maskwatch"] and s["StateDirectory"] == ["maskwatch"]
    assert "MASKWATCH_MODELS=/opt/maskwatch/models" in s["Environment"]
    assert "PrivateDevices" not in s            # the camera and /dev/gpiochip* must stay visible


def test_unit_paths_outside_var_lib_and_with_spaces():
    text = unit_file.render_unit(unit_file.UnitSettings(exec_path=Path("/opt/mw 2/bin/maskwatch"), models_dir=None,
                                                    state_dir=Path("/srv/events"), watchdog_sec=60))
    s = unit_keys(text)["Service"]
    assert s["ExecStart"] == ['"/opt/mw 2/bin/maskwatch" run --config /etc/maskwatch/maskwatch.toml']
    assert "StateDirectory" not in s and s["ReadWritePaths"] == ["/srv/events"] and s["WatchdogSec"] == ["60"]
    assert not any(e.startswith("MASKWATCH_MODELS") for e in s["Environment"])
    with pytest.raises(DeployError, match="watchdog_sec"):
        unit_file.render_unit(unit_file.UnitSettings(watchdog_sec=1))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent (apt-get install systemd)")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    exe = tmp_path / "maskwatch"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / "maskwatch.service"
    unit.write_text(unit_file.render_unit(unit_file.UnitSettings(exec_path=exe)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "maskwatch.service" not in done.stderr, done.stderr   # no warnings about our unit


def cli(argv: list[str]) -> int:
    """The bundle and service commands as ``maskwatch`` parses them, errors left to raise."""
    from maskwatch.edge.cli import build_parser

    args = build_parser(argv).parse_args(argv)
    return args.handler(args)


def test_service_install_dry_run_changes_nothing(tmp_path, capsys):
    assert cli(["service", "install", "--dry-run", "--unit-dir", str(tmp_path), "--user", "pole",
                "--config", "/etc/mw.toml", "--exec", "/opt/mw/bin/maskwatch"]) == 0
    out = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert "User=pole" in out and "ExecStart=/opt/mw/bin/maskwatch run --config /etc/mw.toml" in out
    assert "# would run: systemctl daemon-reload" in out and "# would run: systemctl enable --now maskwatch.service" in out


def test_service_install_and_uninstall_in_a_unit_dir(tmp_path, monkeypatch):
    assert cli(["service", "install", "--no-start", "--unit-dir", str(tmp_path), "--models-dir", "/srv/models"]) == 0
    unit = tmp_path / "maskwatch.service"
    s = unit_keys(unit.read_text())["Service"]
    assert s["ExecStart"][0].startswith(str(Path(sys.executable).parent / "maskwatch"))
    assert "MASKWATCH_MODELS=/srv/models" in s["Environment"]
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    assert cli(["service", "uninstall", "--no-start", "--unit-dir", str(tmp_path)]) == 0
    assert not unit.exists()


def test_service_without_systemctl_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))           # no systemctl on PATH
    for argv in (["service", "status"], ["service", "install", "--unit-dir", str(tmp_path)]):
        with pytest.raises(DeployError, match="^systemctl not found") as err:
            cli(argv)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "maskwatch.service").exists()  # nothing written before the check


def test_service_status_where_systemd_does_not_run_is_one_line(tmp_path, monkeypatch):
    systemctl = tmp_path / "systemctl"      # installed, as in a container or chroot, but not running the system
    systemctl.write_text("#!/bin/sh\necho 'System has not been booted with systemd as init system (PID 1).' >&2\nexit 1\n")
    systemctl.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeployError, match="^systemd is not running this system") as err:
        service.status(running=tmp_path / "no-such-dir")
    assert "\n" not in str(err.value)


def test_cli_registers_bundle_and_service():
    from maskwatch.edge.cli import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert "bundle" in choices and "service" in choices


# ---------------------------------------------------------------- bundle: no network

def test_default_config_is_valid_and_targets_cover_the_boards(tmp_path):
    from maskwatch.edge.config import load_config

    path = tmp_path / "maskwatch.toml"
    path.write_text(DEFAULT_CONFIG)
    config = load_config(path)
    assert config.source.spec == "0" and str(config.events.jsonl.path).startswith("/var/lib/maskwatch/")
    assert set(TARGETS) == {"linux-aarch64-py311", "linux-aarch64-py313", "linux-aarch64-py310", "linux-x86_64-py311"}
    platforms = TARGETS["linux-aarch64-py311"].platforms   # Pi OS Bookworm: glibc 2.36, so lgpio's 2_34 wheels fit
    assert platforms[0] == "manylinux_2_36_aarch64" and "manylinux_2_34_aarch64" in platforms
    assert "manylinux_2_17_aarch64" in platforms and "manylinux2014_aarch64" in platforms
    assert not any("x86_64" in p for p in platforms)
    assert TARGETS["linux-aarch64-py311"].packages == ("lgpio>=0.2.2",)
    assert TARGETS["linux-aarch64-py310"].platforms[0] == "manylinux_2_35_aarch64"   # JetPack 6: Ubuntu 22.04


def test_a_model_the_wheel_holds_is_not_copied_again(tmp_path):
    from maskwatch.convert.bundle.build import add_models
    from maskwatch.edge.manifest import Manifest, default_models_dir

    shipped = Manifest.load(default_models_dir())
    names = ["retinaface_mask_mnv2_320_int8.tflite", "retinaface_mask_mnv2_640_int8.tflite"]
    in_wheel = {names[0]: shipped.entries[names[0]].sha256}
    assert add_models(names, default_models_dir(), tmp_path / "m", in_wheel) == sorted(names)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json", names[1]]
    assert set(Manifest.load(tmp_path / "m").entries) == set(names)
    stale = {names[0]: "0" * 64}  # a wheel holding another version of the file: the bundle carries its own
    add_models(names, default_models_dir(), tmp_path / "n", stale)
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == ["manifest.json", *sorted(names)]


def test_a_bundle_gets_onnx_runtime_only_for_onnx_models():
    from maskwatch.convert.bundle.build import extras_for

    assert extras_for(["retinaface_mask_mnv2_320_int8.tflite", "mask_mnv2_96_int8.tflite"]) == []
    assert extras_for(["retinaface_mask_mnv2_fp32.onnx", "mask_mnv2_96_int8.tflite"]) == ["onnx"]


def test_bundle_refuses_before_downloading(tmp_path):
    with pytest.raises(DeployError, match="unknown target"):
        build_bundle("linux-armv7l-py311", tmp_path)
    with pytest.raises(DeployError, match="config uses retinaface_mask_mnv2_320_int8.tflite"):
        build_bundle(TARGET, tmp_path, models=["retinaface_mnv2_640_int8.tflite", "mask_mnv2_96_int8.tflite"])
    with pytest.raises(DeployError, match="no-such-key: signing key not found"):
        build_bundle(TARGET, tmp_path, sign=tmp_path / "no-such-key")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bundle: built, installed offline, run

def index_reachable() -> str | None:
    """None when pip's index answers; else why not."""
    url = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
    try:
        urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=10).close()
        return None
    except (urllib.error.URLError, OSError) as exc:
        return f"the package index {url} is unreachable ({exc}); the bundle test downloads wheels"


def timed(name: str, started: float) -> None:
    TIMINGS[name] = round(time.monotonic() - started, 1)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    reason = index_reachable()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    try:
        archive = build_bundle(TARGET, tmp_path_factory.mktemp("dist"))
    except DeployError as exc:
        if "needs the package index" in str(exc):
            pytest.skip(f"pip could not download the wheels: {exc}")
        raise
    timed("bundle build", started)
    return archive


def unpack(archive: Path, where: Path) -> Path:
    started = time.monotonic()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(where)], check=True)
    timed(f"unpack {where.name}", started)
    (root,) = where.iterdir()
    return root


def offline_env(tmp: Path) -> dict:
    """The environment for install.sh: no pip config, no index, no find-links but the bundle's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "MASKWATCH_", "VIRTUAL_ENV"))}
    env.update(PIP_NO_INDEX="1", PIP_INDEX_URL="http://127.0.0.1:9/", PIP_CONFIG_FILE=os.devnull,
               PYTHON=sys.executable, MASKWATCH_SYSTEM="0", MASKWATCH_PREFIX=str(tmp / "prefix"),
               MASKWATCH_CONFIG=str(tmp / "etc" / "maskwatch.toml"), MASKWATCH_STATE_DIR=str(tmp / "state"),
               MASKWATCH_UNIT_DIR=str(tmp / "units"))
    return env


def test_bundle_contents(bundle, tmp_path):
    (tmp_path / "contents").mkdir()
    root = unpack(bundle, tmp_path / "contents")
    assert root.name == f"maskwatch-0.1.0-{TARGET}"
    wheels = sorted(p.name for p in (root / "wheels").iterdir())
    assert any(w.startswith("maskwatch-0.1.0-py3-none-any") for w in wheels)
    for needed in ("numpy", "opencv_python_headless", "ai_edge_litert", "pydantic", "gpiozero", "paho_mqtt"):
        assert any(w.startswith(needed + "-") for w in wheels), needed
    assert not any(w.startswith("onnxruntime") for w in wheels)  # the config's models are TFLite: no ONNX Runtime
    assert "MW_EXTRAS=\nMW_PACKAGES=''\nMW_SYSTEM_SITE=0\n" in (root / "target.env").read_text()
    assert not any(w.lower().startswith(("tensorflow", "tf_keras", "keras-")) for w in wheels)
    assert all(w.endswith("-none-any.whl") or "x86_64" in w for w in wheels)
    manifest = json.loads((root / "models" / "manifest.json").read_text())
    assert sorted(manifest["models"]) == ["mask_mnv2_96_int8.tflite", "retinaface_mask_mnv2_320_int8.tflite"]
    # the default models are in the wheel already: the bundle carries them once, there
    assert sorted(p.name for p in (root / "models").iterdir()) == ["manifest.json"]
    listed = {line.split("  ", 1)[1] for line in (root / "SHA256SUMS").read_text().splitlines()}
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert listed == present
    assert os.access(root / "install.sh", os.X_OK)
    assert (root / "config" / "maskwatch.toml").read_text() == DEFAULT_CONFIG
    assert json.loads((root / "bundle.json").read_text())["target"] == TARGET


def test_bundle_installs_offline_and_runs(bundle, tmp_path, capsys):
    (tmp_path / "unpacked").mkdir()
    root = unpack(bundle, tmp_path / "unpacked")
    env = offline_env(tmp_path)
    started = time.monotonic()
    done = subprocess.run([str(root / "install.sh")], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    timed("install.sh", started)
    assert done.returncode == 0, done.stdout + done.stderr
    prefix = tmp_path / "prefix"
    installed = subprocess.run([str(prefix / "venv" / "bin" / "python"), "-c", "import maskwatch.edge; print(maskwatch.edge.__file__)"],
                               capture_output=True, text=True, check=True, cwd=tmp_path, env=env).stdout
    assert installed.startswith(str(prefix / "venv")), installed   # the wheel, not this checkout
    # such a venv (not an editable install) builds bundles from the checkout it is run inside, and says so elsewhere
    tree = [str(prefix / "venv" / "bin" / "python"), "-c",
            "from maskwatch.convert.bundle.build import source_tree; print(source_tree())"]
    assert subprocess.run(tree, capture_output=True, text=True, cwd=REPO, env=env).stdout.strip() == str(REPO)
    elsewhere = subprocess.run(tree, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert "not a maskwatch source tree; run bundle inside a checkout" in elsewhere.stderr, elsewhere.stderr[-300:]
    assert sorted(p.name for p in (prefix / "models").iterdir()) == [
        "manifest.json", "mask_mnv2_96_int8.tflite", "retinaface_mask_mnv2_320_int8.tflite"]
    unit = (tmp_path / "units" / "maskwatch.service").read_text()
    s = unit_keys(unit)["Service"]
    assert s["ExecStart"] == [f"{prefix}/venv/bin/maskwatch run --config {tmp_path}/etc/maskwatch.toml"]
    assert f"MASKWATCH_MODELS={prefix}/models" in s["Environment"]
    assert s["ReadWritePaths"] == [str(tmp_path / "state")] and "StateDirectory" not in s
    assert str(tmp_path / "state") in (tmp_path / "etc" / "maskwatch.toml").read_text()
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "units" / "maskwatch.service")],
                                capture_output=True, text=True)
        assert verify.returncode == 0, verify.stderr

    run_env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    run_env["MASKWATCH_MODELS"] = str(prefix / "models")
    started = time.monotonic()
    device_python = [str(prefix / "venv" / "bin" / "python"), str(NO_TOOLCHAIN)]  # maskwatch, refusing the workstation side
    ran = subprocess.run(device_python + ["run", "--max-frames", "20", "--gpio", "mock", "--print-events"],
                         env=run_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    timed("maskwatch run (installed)", started)
    assert ran.returncode == 0, ran.stderr
    events = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    assert any(e["type"] == "new" for e in events), ran.stdout

    # the installed wheel alone (its own models, no MASKWATCH_MODELS): doctor is clean, and a benchmark
    # run from this checkout measures the installed package, failing loudly for a model it does not have
    wheel_env = {k: v for k, v in run_env.items() if k != "MASKWATCH_MODELS"}
    doctor = subprocess.run(device_python + ["doctor"], env=wheel_env, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert doctor.returncode == 0 and "FAIL" not in doctor.stdout, doctor.stdout + doctor.stderr
    assert "Warning" not in doctor.stderr and "model mask_mnv2_96_fp32.keras" not in doctor.stdout, doctor.stderr
    assert "other models" in doctor.stdout  # the manifest's other entries, summed up in one line
    bench = [str(prefix / "venv" / "bin" / "maskwatch"), "bench", "--warmup", "1", "--repeats", "2",
             "--clip-frames", "3", "--out", str(tmp_path / "bench")]
    done = subprocess.run(bench + ["--variants", "litert-int8-320-mask"], env=wheel_env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-800:]
    assert "error" not in json.loads((tmp_path / "bench" / "bench.json").read_text())["results"][0]
    done = subprocess.run(bench + ["--variants", "litert-fp32-640"], env=wheel_env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)  # not in the wheel: the variant fails, so must the command
    assert done.returncode == 1 and "1 of 1 variants failed (litert-fp32-640)" in done.stderr, done.stderr[-800:]
    with capsys.disabled():
        print(f"\ndeploy timings (s): {TIMINGS}")


def test_the_wheel_holds_one_namespace_the_default_models_and_the_licence(bundle, tmp_path):
    root = unpack(bundle, tmp_path)
    (wheel,) = (root / "wheels").glob("maskwatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"maskwatch", "maskwatch-0.1.0.dist-info"}
    assert not any(n.startswith("maskwatch/__init__") for n in names)  # a namespace package
    models = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("maskwatch/models/")
                    and n.endswith((".json", ".tflite", ".onnx", ".keras")))
    assert models == ["manifest.json", "mask_mnv2_96_int8.tflite", "retinaface_mask_mnv2_320_int8.tflite"]
    assert "maskwatch-0.1.0.dist-info/licenses/LICENSE" in names
    assert wheel.stat().st_size < 15e6, wheel.stat().st_size


def test_tampered_or_added_file_stops_install(bundle, tmp_path, capsys):
    (tmp_path / "unpacked").mkdir()
    root = unpack(bundle, tmp_path / "unpacked")
    env = offline_env(tmp_path)
    extra = root / "wheels" / "evil-1.0-py3-none-any.whl"
    extra.write_bytes(b"not a wheel")
    done = subprocess.run([str(root / "install.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "wheels/evil-1.0-py3-none-any.whl" in done.stderr, done.stderr
    extra.unlink()

    model = next((root / "wheels").glob("maskwatch-*.whl"))  # the default models travel inside it
    with open(model, "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    started = time.monotonic()
    done = subprocess.run([str(root / "install.sh")], env=env, capture_output=True, text=True, timeout=120)
    timed("install.sh refusing a tampered bundle", started)
    assert done.returncode != 0
    assert f"checksum mismatch: wheels/{model.name}" in done.stderr, done.stderr
    assert "nothing installed" in done.stderr
    assert not (tmp_path / "prefix").exists() and not (tmp_path / "units").exists()
    with capsys.disabled():
        print(f"\ndeploy timings (s): {TIMINGS}")


def test_a_planted_symlink_stops_install(bundle, tmp_path):
    """A symlink with the right bytes behind it passes sha256sum -c, and could point anywhere: refused."""
    (tmp_path / "unpacked").mkdir()
    root = unpack(bundle, tmp_path / "unpacked")
    config = root / "config" / "maskwatch.toml"
    elsewhere = tmp_path / "elsewhere.toml"
    shutil.copyfile(config, elsewhere)
    config.unlink()
    config.symlink_to(elsewhere)
    assert subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=root, capture_output=True).returncode == 0
    done = subprocess.run([str(root / "install.sh")], env=offline_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "not a plain file or folder: config/maskwatch.toml" in done.stderr, done.stderr
    assert "nothing installed" in done.stderr and not (tmp_path / "prefix").exists()


def keypair(path: Path) -> str:
    """A fresh ed25519 key at ``path``; returns its public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) is not installed")
def test_a_device_with_allowed_signers_takes_only_bundles_signed_by_them(bundle, tmp_path):
    from maskwatch.convert.bundle.build import SIGNATURE_NAMESPACE, sign_sums

    (tmp_path / "unpacked").mkdir()
    root = unpack(bundle, tmp_path / "unpacked")
    trusted = keypair(tmp_path / "trusted")
    keypair(tmp_path / "stranger")  # a key pair the device does not trust
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'builder@maskwatch namespaces="{SIGNATURE_NAMESPACE}" {trusted}\n')
    env = offline_env(tmp_path)
    env.update(MASKWATCH_ALLOWED_SIGNERS=str(allowed), PYTHON=str(tmp_path / "no-python"))  # stop after the checks

    def install() -> subprocess.CompletedProcess:
        return subprocess.run([str(root / "install.sh")], env=env, capture_output=True, text=True, timeout=120)

    done = install()
    assert done.returncode == 1 and "the bundle is not signed" in done.stderr, done.stderr
    sign_sums(root, tmp_path / "stranger")
    done = install()
    assert done.returncode == 1 and "not a good signature by a key in" in done.stderr, done.stderr
    sign_sums(root, tmp_path / "trusted")
    done = install()
    assert "SHA256SUMS signed by builder@maskwatch" in done.stdout, done.stdout + done.stderr
    assert "checked" in done.stdout and "no-python not found" in done.stderr, done.stderr   # past every bundle check
    sums = (root / "SHA256SUMS").read_text()
    (root / "SHA256SUMS").write_text(sums.replace("config/maskwatch.toml", "config/maskwatch.toml ", 1))
    done = install()
    assert done.returncode == 1 and "not a good signature" in done.stderr, done.stderr  # the sums are what is signed
    (root / "SHA256SUMS").write_text(sums)
    del env["MASKWATCH_ALLOWED_SIGNERS"]   # default /etc/maskwatch/allowed_signers: absent on this machine
    if not Path("/etc/maskwatch/allowed_signers").exists():
        assert "signature not checked" in install().stdout
    assert not (tmp_path / "prefix").exists()


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) is not installed")
def test_an_archive_changed_after_signing_is_refused_before_it_is_opened(bundle, tmp_path):
    """The attack: install.sh edited to skip its own check, SHA256SUMS made anew, the archive repacked
    (keeping the signature, or signed with the attacker's key). The installed maskwatch and the
    documented ssh-keygen line check the archive itself, so neither lets it in."""
    from maskwatch.convert.bundle.build import sign_file, write_archive, write_sums
    from maskwatch.edge.deploy.signature import SIGNATURE_NAMESPACE

    trusted = keypair(tmp_path / "trusted")
    keypair(tmp_path / "attacker")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'builder@maskwatch namespaces="{SIGNATURE_NAMESPACE}" {trusted}\n')
    signed = tmp_path / "genuine" / bundle.name
    signed.parent.mkdir()
    shutil.copy(bundle, signed)
    sign_file(signed, tmp_path / "trusted")
    maskwatch = [str(Path(sys.executable).with_name("maskwatch")), "update", "--allowed-signers", str(allowed)]
    documented = ("ssh-keygen -Y verify -f {allowed} -I builder@maskwatch -n maskwatch-bundle -s {archive}.sig "
                  "< {archive}")

    def first_install_check(archive: Path) -> int:
        return subprocess.run(documented.format(allowed=allowed, archive=archive), shell=True,
                              capture_output=True, text=True).returncode

    done = subprocess.run(maskwatch + ["--check", str(signed)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "signed by builder@maskwatch" in done.stderr, done.stderr
    assert first_install_check(signed) == 0

    (tmp_path / "unpacked").mkdir()
    root = unpack(signed, tmp_path / "unpacked")
    script = (root / "install.sh").read_text()
    assert 'if [ -f "$ALLOWED_SIGNERS" ]; then' in script
    (root / "install.sh").write_text(script.replace('if [ -f "$ALLOWED_SIGNERS" ]; then', "if false; then", 1))
    (root / "config" / "maskwatch.toml").write_text('[events.mqtt]\nhost = "attacker.example"\n')
    write_sums(root)
    tampered = tmp_path / "tampered" / bundle.name
    tampered.parent.mkdir()
    write_archive(root, tampered)
    shutil.copy(f"{signed}.sig", f"{tampered}.sig")               # the genuine signature, kept
    env = offline_env(tmp_path)
    done = subprocess.run(maskwatch + [str(tampered)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not a good signature by builder@maskwatch" in done.stderr, done.stderr
    assert first_install_check(tampered) != 0
    sign_file(tampered, tmp_path / "attacker")                      # or signed with the attacker's own key
    done = subprocess.run(maskwatch + [str(tampered)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"is not a signature by a key in {allowed}" in done.stderr, done.stderr
    assert first_install_check(tampered) != 0
    Path(f"{tampered}.sig").unlink()
    done = subprocess.run(maskwatch + [str(tampered)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not signed" in done.stderr, done.stderr
    assert not (tmp_path / "prefix").exists() and not (tmp_path / "etc").exists()   # nothing installed
