"""The pipeline keeps detecting and signalling when a place it writes to fails: face crops on a
read-only or full disk, a sink that raises. Real models, real files, a real tmpfs, mock pins."""
from __future__ import annotations

import json
import logging

import pytest

from conftest import fill_disk, tmpfs
from maskwatch.edge.app import run
from maskwatch.edge.cli import main
from maskwatch.edge.config import load_config
from maskwatch.edge.errors import ConfigError

SAVE = {"signal.backend": "mock", "device_id": "crops-pole", "privacy.save_crops": True,
        "classifier.rule": "crop"}


def test_an_unwritable_crops_folder_is_a_one_line_error_before_the_first_frame(tmp_path, capsys):
    config = load_config(None, {**SAVE, "privacy.crops_dir": "/proc/maskwatch-crops",
                                "events.jsonl": {"path": str(tmp_path / "events.jsonl")}})
    with pytest.raises(ConfigError, match="privacy.crops_dir /proc/maskwatch-crops: cannot write face crops there"):
        run(config)
    assert not (tmp_path / "events.jsonl").exists()  # nothing started
    (tmp_path / "file").write_text("not a folder")
    code = main(["run", "--set", f"privacy.crops_dir={tmp_path / 'file'}", "--set", "privacy.save_crops=true",
                 "--gpio", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write face crops there" in err and "Traceback" not in err


def test_a_full_disk_under_the_crops_loses_crops_not_the_run(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="maskwatch.edge.crops")
    with tmpfs(tmp_path / "disk", "64k") as disk:
        filler = fill_disk(disk, leave=12_000)  # room for a few crops, then full
        events = tmp_path / "events.jsonl"
        config = load_config(None, {**SAVE, "privacy.crops_dir": str(disk / "crops"),
                                    "tracker.reclassify_every": 1, "events.jsonl": {"path": str(events)}})
        stats = run(config, max_frames=60)
        sizes = [path.stat().st_size for path in (disk / "crops").glob("*.jpg")]
        filler.unlink()
    assert stats.frames == 60 and stats.classified >= 50
    assert 1 <= len(sizes) < stats.classified  # some written, the rest lost, the run went on
    assert min(sizes) > 500  # no torn JPEG left behind
    failing = [r.getMessage() for r in caplog.records if "cannot write face crops" in r.getMessage()]
    assert len(failing) == 1  # said once, not per crop
    kinds = [json.loads(line)["type"] for line in events.read_text().splitlines()]
    assert kinds.count("new") == 1 and kinds[-1] == "state"  # events flowed as usual


def test_a_sink_that_raises_never_stops_detection_or_the_outputs(tmp_path, caplog):
    from maskwatch.edge.app import build_pipeline, build_source

    events = tmp_path / "events.jsonl"
    config = load_config(None, {"signal.backend": "mock", "device_id": "sink-pole",
                                "events.jsonl": {"path": str(events)}})
    pipeline = build_pipeline(config)
    buzzer = pipeline.indicator.devices["buzzer"].pin
    pipeline.events.sinks[0].close()  # the event log is gone: every publish raises SinkClosed
    with pipeline, build_source(config, pipeline) as source:
        stats = pipeline.run(source)
    assert stats.frames == 90 and stats.events["new"] == 1 and stats.publish_errors >= 3
    assert [bool(s.state) for s in buzzer.states][-1] is False and any(s.state for s in buzzer.states)
    logged = [r for r in caplog.records if "publishing a" in r.getMessage()]
    assert len(logged) == 1 and "SinkClosed" in logged[0].exc_text  # in full once, then counted


def test_a_failed_detect_leaves_no_empty_output_folder(tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    out = tmp_path / "out"
    assert main(["detect", str(broken), "--out", str(out)]) == 2
    assert "broken.jpg" in capsys.readouterr().err and not out.exists()
    assert main(["detect", "--out", str(out)]) == 0 and len(list(out.glob("*.faces.jpg"))) == 1


@pytest.mark.parametrize("choice, files", [(None, False), ("0", True)])
def test_onnx_runtime_telemetry_is_off_unless_the_user_turns_it_on(tmp_path, choice, files):
    """ONNX Runtime >= 1.29 writes a device id under ~/.cache/Microsoft and uploads events unless told not to."""
    import os
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    # ONNX Runtime keeps quiet by itself on CI machines (CI, GITHUB_ACTIONS, ...): take those away, so
    # that the opt-in run shows what an ordinary device does
    ci = {"CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL", "CODEBUILD_BUILD_ID",
          "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER"}
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY" and k not in ci}
    env["HOME"] = str(tmp_path)
    if choice is not None:
        env["ORT_DISABLE_TELEMETRY"] = choice
    done = subprocess.run([sys.executable, "-m", "maskwatch.edge.cli", "detect", "--model", "retinaface_mnv2_fp32.onnx",
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".cache" / "Microsoft").exists() is files
