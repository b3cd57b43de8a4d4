"""Every bundle target's wheelhouse resolves: pip's dry run for the target's platform, Python and ABI.

Each test resolves what ``maskwatch bundle --target T`` would download (maskwatch's own wheel with the
``onnx`` extra, the target's extras and packages, under its pins) from the package index's metadata,
without downloading the wheels, and checks the choices: a wheel for the target for every package, no
wheel needing a newer glibc than the target's OS has, the pins honoured, and no TensorFlow. It skips,
with the reason, when the package index cannot be reached.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from maskwatch.edge.deploy import DeployError
from maskwatch.convert.bundle.build import build_wheel, resolve, source_tree
from maskwatch.convert.bundle.targets import FORBIDDEN, TARGETS
from test_deploy import index_reachable

#: Which OS each target is for, and that OS's glibc: the wheels may need no newer one.
EXPECTED = {
    "linux-aarch64-py311": ("Bookworm", "2.36"),
    "linux-aarch64-py313": ("Trixie", "2.41"),
    "linux-aarch64-py310": ("JetPack 6", "2.35"),
    "linux-x86_64-py311": ("x86-64", "2.28"),
}


@pytest.fixture(scope="module")
def own_wheel(tmp_path_factory) -> Path:
    reason = index_reachable()
    if reason:
        pytest.skip(reason)
    scratch = tmp_path_factory.mktemp("wheel")
    return build_wheel(source_tree(), scratch / "wheels", scratch)


def test_targets_name_their_boards_and_glibc():
    assert set(TARGETS) == set(EXPECTED)
    for name, (os_name, glibc) in EXPECTED.items():
        target = TARGETS[name]
        assert os_name in target.boards and target.glibc == glibc, target
        minor = int(glibc.split(".")[1])
        assert target.platforms[0] == f"manylinux_2_{minor}_{target.machine}"
        assert target.platforms[-2:] == [f"manylinux_2_17_{target.machine}", f"manylinux2014_{target.machine}"]
        assert len(target.platforms) == minor - 17 + 2 and target.abi == "cp" + target.python.replace(".", "")


def wheel_glibc(filename: str) -> tuple[int, int]:
    """The newest glibc a wheel's platform tags need ((2, 17) for manylinux2014; (0, 0) for pure Python)."""
    tags = filename[:-4].split("-")[-1].split(".")
    needed = [(2, 17) if t.startswith("manylinux2014") else tuple(map(int, re.match(r"manylinux_(\d+)_(\d+)", t).groups()))
              for t in tags if t.startswith("manylinux")]
    return min(needed) if needed else (0, 0)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_target_wheelhouse_resolves(name, own_wheel):
    target = TARGETS[name]
    try:
        chosen = resolve(target, own_wheel, ["onnx"])
    except DeployError as exc:
        if "needs the package index" in str(exc) and index_reachable():
            pytest.skip(f"the package index went away: {exc}")
        raise
    for needed in ("maskwatch", "numpy", "opencv-python-headless", "ai-edge-litert", "onnxruntime", "pydantic",
                   "gpiozero", "paho-mqtt"):
        assert needed in chosen, (needed, sorted(chosen))
    assert not [n for n in chosen if n.replace("-", "_") in FORBIDDEN], sorted(chosen)
    newest = tuple(map(int, target.glibc.split(".")))
    for dist, wheel in chosen.items():
        assert wheel.endswith(".whl"), (dist, wheel)
        tag = wheel[:-4].split("-")[-1]
        assert tag == "any" or target.machine in tag, (dist, wheel)
        assert wheel_glibc(wheel) <= newest, f"{wheel} needs a newer glibc than {target.glibc}"
        assert wheel[:-4].split("-")[-2] in (target.abi, "abi3", "none"), (dist, wheel)
    for pin in target.pins:
        dist, version = pin.split("==")
        assert f"-{version}-" in chosen[dist], (pin, chosen[dist])
    if name == "linux-aarch64-py310":
        assert chosen["onnxruntime"].startswith("onnxruntime-1.23.2-cp310"), chosen["onnxruntime"]
        assert "jetson-gpio" in chosen, sorted(chosen)      # the jetson extra: Jetson.GPIO
    if name == "linux-aarch64-py311":                       # lgpio's manylinux_2_34 wheel, not lgpio 0.0.0.2
        assert re.match(r"lgpio-0\.2\.\d.*-cp311-cp311-manylinux_2_34_aarch64\.whl", chosen["lgpio"]), chosen["lgpio"]
    if target.system_site_packages:                         # Trixie: the OS's python3-lgpio, none bundled
        assert "lgpio" not in chosen
