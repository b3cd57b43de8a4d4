"""Every ``maskwatch`` command shown in README.md, docs/ and the model cards, tried as a user would.

Each example must parse with the real command line. Those that need nothing a test machine lacks
are then run as written, in a fresh folder holding the files they name (a street photo, crops, a
video), with the venv's own ``maskwatch``; each must finish with exit status 0, or refuse in one
line. An example that needs a camera, root, a network, hours, or data absent here is parsed only,
and the test says why.
"""
from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from maskwatch.edge.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "models").glob("*.md"))]
MASKWATCH = Path(sys.executable).with_name("maskwatch")

#: Examples parsed but not run, by a pattern of their text: why not.
NOT_RUN = [
    (r"convert (train-|retinaface|verify)", "trains or converts for minutes to hours (test_convert, "
                                            "test_*_training run these on small data)"),
    (r"bundle ", "downloads the target's wheels (test_deploy builds and installs a bundle)"),
    (r"--source 0\b", "needs a camera"),
    (r"service install --user", "needs root and systemd"),
    (r"bench --soak", "runs tens of thousands of frames (test_predict_bench soaks 1200)"),
    (r"bench --baseline", "needs the TensorFlow baseline and the data (test_predict_bench runs it)"),
    (r"bench --out", "measures every variant for minutes (test_predict_bench and test_deploy run bench)"),
    (r"eval --voc", "scores hundreds of scenes per variant for minutes (test_scoring, test_classifier score them)"),
]
#: Examples that must refuse on a test machine, by a pattern of their text: what their one line says.
REFUSED_HERE = [
    (r"run --config /etc/maskwatch", "no such config file"),                    # a pole's config, absent here
    (r"service status", "(systemd is not running this system|systemctl not found)"),
]
#: Examples that read ../shared/data run only where it is present.
NEEDS_DATA = "../shared/data"


def examples() -> list[tuple[str, str]]:
    """``(where, command)`` for each ``maskwatch`` command line in a shell block of the docs."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", doc.read_text(), re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.split("  #")[0].split(" # ")[0].strip()
                for part in line.split("&&"):
                    words = shlex.split(part.strip().replace("$k", "0"))
                    if words and Path(words[0]).name == "maskwatch":
                        found.append((doc.relative_to(REPO).as_posix(), shlex.join(words[1:])))
    return found


EXAMPLES = examples()


def test_the_docs_show_commands():
    assert len(EXAMPLES) >= 20, EXAMPLES  # the extraction itself must not silently find nothing


@pytest.mark.parametrize("where, command", EXAMPLES, ids=[f"{w}: {c[:60]}" for w, c in EXAMPLES])
def test_every_documented_command_parses(where, command, capsys):
    argv = shlex.split(command)
    build_parser(argv).parse_args(argv)   # argparse exits 2 on an unknown option or a bad value


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _prepare(folder: Path, sample_image: Path) -> None:
    """The files the examples name: photos, crop folders, a short street video."""
    for name in ("street.jpg", "crowd.png"):
        cv2.imwrite(str(folder / name), cv2.imread(str(sample_image)))
    for sub in ("crops", "more"):
        (folder / sub).mkdir()
        face = cv2.imread(str(sample_image))[30:210, 150:300]
        cv2.imwrite(str(folder / sub / "face.jpg"), face)
    image = cv2.imread(str(sample_image))
    writer = cv2.VideoWriter(str(folder / "street.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10,
                             (image.shape[1], image.shape[0]))
    for _ in range(10):
        writer.write(image)
    writer.release()
    if DATA.is_dir():  # ../shared/data as the docs spell it, from the example's folder
        (folder.parent / "shared").symlink_to(DATA.parent, target_is_directory=True)


@pytest.mark.parametrize("where, command", EXAMPLES, ids=[f"{w}: {c[:60]}" for w, c in EXAMPLES])
def test_every_documented_command_runs_or_refuses_in_one_line(where, command, tmp_path, sample_image):
    reason = next((why for pattern, why in NOT_RUN if re.search(pattern, command)), None)
    if reason:
        pytest.skip(f"{where}: `maskwatch {command}` {reason}")
    if NEEDS_DATA in command and not DATA.is_dir():
        pytest.skip(f"{where}: `maskwatch {command}` needs {DATA} (absent)")
    if "http://127.0.0.1:8080" in command and not _free(8080):
        pytest.skip("port 8080 is taken on this machine")
    folder = tmp_path / "work"
    folder.mkdir()
    _prepare(folder, sample_image)
    env = {"PATH": f"{MASKWATCH.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "GPIOZERO_PIN_FACTORY": "mock",
           "LANG": "C.UTF-8"}
    done = subprocess.run([str(MASKWATCH), *shlex.split(command)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)
    refusal = next((message for pattern, message in REFUSED_HERE if re.search(pattern, command)), None)
    if refusal is None:
        assert done.returncode == 0, f"{where}: `maskwatch {command}` exited {done.returncode}:\n{done.stderr[-1500:]}"
        return
    errors = [line for line in done.stderr.splitlines() if line.startswith("maskwatch: error:")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-1500:]
    assert re.search(refusal, errors[0]), errors[0]


@pytest.mark.parametrize("path, most", [(REPO / "README.md", 200),
                                        *[(card, 120) for card in sorted((REPO / "models").glob("*.md"))]],
                         ids=lambda v: v.name if isinstance(v, Path) else str(v))
def test_operator_docs_stay_short(path, most):
    """The README (what it does, install, quick starts, config, topics, failures, tests) and each model card
    stay short enough to read at once; tables and history go to docs/ and docs/experiments/."""
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= most, f"{path.name}: {lines} lines, at most {most}"
