"""The maskwatch command as a user runs it."""
import json
import subprocess
import sys
from pathlib import Path

from maskwatch.edge.cli import main


def test_detect_default_runs_on_the_shipped_sample(tmp_path, capsys):
    assert main(["detect", "--out", str(tmp_path)]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["image"] == "astronaut.jpg" and len(line["faces"]) == 1
    assert (tmp_path / "astronaut.faces.jpg").stat().st_size > 10_000


def test_missing_image_is_one_line_error(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "missing.jpg"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"maskwatch: error: {tmp_path / 'missing.jpg'}: no such image file"


def test_unknown_model_is_one_line_error(tmp_path, capsys):
    assert main(["detect", "--model", "nope.tflite", "--out", str(tmp_path)]) == 2
    assert "nope.tflite" in capsys.readouterr().err


def test_a_broken_image_among_many_is_skipped_by_name(tmp_path, sample_image, caplog):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    assert main(["detect", str(sample_image), str(broken), "--out", str(tmp_path / "out")]) == 1
    assert (tmp_path / "out" / "astronaut.faces.jpg").is_file()
    assert f"{broken}: not a readable image (skipped)" in caplog.text
    assert "1 of 2 image files skipped" in caplog.text


NO_TOOLCHAIN = Path(__file__).with_name("no_toolchain.py")


def test_device_commands_import_no_workstation_module(tmp_path):
    """A device's commands import neither maskwatch.convert, maskwatch.benchmarks nor TensorFlow."""
    for argv in (["--help"], ["run", "--help"], ["run", "--gpio", "mock", "--max-frames", "2"], ["doctor"],
                 ["detect", "--out", str(tmp_path)], ["service", "--help"]):
        done = subprocess.run([sys.executable, str(NO_TOOLCHAIN), *argv], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, (argv, done.stdout[-300:], done.stderr[-500:])


def test_the_check_fails_for_a_command_that_imports_the_toolchain(tmp_path):
    done = subprocess.run([sys.executable, str(NO_TOOLCHAIN), "eval", "--help"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 3 and "maskwatch.benchmarks.accuracy" in done.stderr, done.stderr[-500:]


def test_verbose_works_before_and_after_the_subcommand():
    from maskwatch.edge.cli import build_parser

    for argv in (["-v", "doctor"], ["doctor", "-v"]):
        assert build_parser(argv).parse_args(argv).verbose is True
    assert build_parser(["doctor"]).parse_args(["doctor"]).verbose is False


def test_convert_without_the_toolchain_is_a_one_line_error(capsys):
    import importlib.util

    import pytest

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed here; the device environment (.venv-tflite) runs this")
    with pytest.raises(SystemExit) as exit_:  # parsing alone needs no toolchain
        main(["convert", "--help"])
    assert exit_.value.code == 0
    capsys.readouterr()
    assert main(["convert", "train-detector", "--voc", "."]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install -e '.[convert]' in the checkout" in err, err
