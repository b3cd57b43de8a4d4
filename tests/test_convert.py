"""Conversion end to end on the real graph, parity of every format, and bad input."""
import pytest

pytest.importorskip("tensorflow", reason="maskwatch[convert] (TensorFlow) is not installed")

from maskwatch.convert.detector import verify  # noqa: E402
from maskwatch.convert.detector.convert_graph import ConvertRequest, run  # noqa: E402
from maskwatch.edge.cli import main  # noqa: E402
from maskwatch.edge.detector import FaceDetector  # noqa: E402
from maskwatch.edge.errors import ConfigError, ConversionError, InputError  # noqa: E402
from maskwatch.edge.image import read_image  # noqa: E402
from maskwatch.edge.manifest import Manifest, sha256_of  # noqa: E402

ALL = {"retinaface_mnv2_160_fp32.tflite", "retinaface_mnv2_160_int8.tflite",
       "retinaface_mnv2_fp32.onnx", "retinaface_mnv2_int8.onnx"}


def test_every_format_written_with_a_full_manifest_entry(converted):
    manifest = Manifest.load(converted)
    assert set(manifest.entries) == ALL
    assert sorted(p.name for p in converted.iterdir()) == sorted(ALL | {"manifest.json"})  # no partial files
    for name, entry in manifest.entries.items():
        assert entry.sha256 == sha256_of(converted / name)
        assert entry.outputs[0] == "bbox_8" and len(entry.outputs) == 9
        assert entry.source["sha256"].startswith("cf242e86")
        assert entry.anchors["steps"] == [8, 16, 32]
        assert "tensorflow-cpu" in entry.converter or "tensorflow" in entry.converter
    int8 = manifest.entries["retinaface_mnv2_160_int8.tflite"]
    assert int8.input.dtype == "uint8" and int8.input.shape == [1, 160, 160, 3]
    assert int8.calibration["images"] > 0
    assert manifest.entries["retinaface_mnv2_fp32.onnx"].dynamic


def test_parity_of_every_format(converted, graph_path, calib_dir, sample_image):
    reference = verify.rg.HeadsModel(verify.rg.parse_graph_def(graph_path.read_bytes()))
    images = [read_image(sample_image)]
    for name in sorted(ALL):
        figures = verify.compare(FaceDetector(converted / name, input_size=320), reference, images)
        assert figures["reference_faces"] >= 1
        if "fp32" in name:
            assert max(figures["max_abs_error"].values()) < 1e-3, name
            assert figures["f1"] == 1.0, name
        else:
            assert figures["f1"] == 1.0, name
            assert figures["mean_box_error_px"] < 5, name


def test_verify_writes_figures_into_the_manifest(converted, graph_path, scenes, capsys):
    code = main(["convert", "verify", "--models", str(converted), "--images", str(scenes), "--limit", "4",
                 "--graph", str(graph_path), "--input-size", "320"])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ALL:
        assert name in printed
        parity = Manifest.load(converted).entries[name].parity
        assert parity["images"] == 4 and "(val split)" in parity["image_set"]
        assert 0.0 <= parity["f1"] <= 1.0


def test_converted_int8_detects_the_sample_face(converted, sample_image):
    faces = FaceDetector(converted / "retinaface_mnv2_160_int8.tflite").detect(read_image(sample_image))
    assert len(faces) == 1


def _request(tmp_path, graph, **kw):
    kw.setdefault("formats", ["tflite-fp32"])
    kw.setdefault("sizes", [64])
    return ConvertRequest(out=tmp_path / "out", graph=graph, **kw)


def _nothing_written(tmp_path):
    out = tmp_path / "out"
    return not out.exists() or not any(out.iterdir())


def test_missing_graph(tmp_path):
    with pytest.raises(InputError, match="nope.pb"):
        run(_request(tmp_path, tmp_path / "nope.pb"))
    assert _nothing_written(tmp_path)


def test_tampered_graph_is_refused(tmp_path, graph_path):
    bad = tmp_path / "frozen_graph.pb"
    data = bytearray(graph_path.read_bytes())
    data[-100] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(ConversionError, match="sha256.*--trust-graph"):
        run(_request(tmp_path, bad))
    assert _nothing_written(tmp_path)


def test_graph_that_is_not_retinaface(tmp_path):
    bad = tmp_path / "other.pb"
    bad.write_bytes(b"\x0a\x03abc")
    with pytest.raises(ConversionError):
        run(_request(tmp_path, bad, trust_graph=True))
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize("size", [100, 0, 4096])
def test_size_must_be_a_multiple_of_32(tmp_path, graph_path, size):
    with pytest.raises(ConfigError, match=f"--sizes {size}"):
        run(_request(tmp_path, graph_path, sizes=[size]))
    assert _nothing_written(tmp_path)


def test_int8_refuses_without_real_calibration_images(tmp_path, graph_path):
    with pytest.raises(ConfigError, match="--calib"):
        run(_request(tmp_path, graph_path, formats=["tflite-int8"]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty.*no images"):
        run(_request(tmp_path, graph_path, formats=["tflite-int8"], calib=empty))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "broken.jpg").write_bytes(b"not a picture")
    with pytest.raises(InputError, match="could be read"):
        run(_request(tmp_path, graph_path, formats=["tflite-int8"], calib=junk, calib_split="all"))
    with pytest.raises(InputError, match="not a folder"):
        run(_request(tmp_path, graph_path, formats=["tflite-int8"], calib=junk / "broken.jpg"))
    assert _nothing_written(tmp_path)


def test_format_table_drives_options(tmp_path, graph_path):
    with pytest.raises(ConfigError, match="unknown format 'tflite-int4'"):
        run(_request(tmp_path, graph_path, formats=["tflite-int4"]))
    with pytest.raises(ConfigError, match="--opset applies to onnx-fp32, onnx-int8"):
        run(_request(tmp_path, graph_path, given_options={"opset"}))
    with pytest.raises(ConfigError, match="--opset 21"):
        run(_request(tmp_path, graph_path, formats=["onnx-fp32"], opset=21))
    assert _nothing_written(tmp_path)


def test_cli_errors_are_one_line(tmp_path, graph_path, capsys):
    code = main(["convert", "retinaface", "--out", str(tmp_path / "out"), "--graph", str(graph_path), "--sizes", "100"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "--sizes 100" in err


def test_a_failed_run_keeps_the_good_model(tmp_path, graph_path, converted):
    """A second run that fails keeps the earlier model and manifest byte for byte."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("retinaface_mnv2_160_fp32.tflite", "manifest.json"):
        (out / name).write_bytes((converted / name).read_bytes())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError):
        run(_request(tmp_path, graph_path, formats=["tflite-fp32", "tflite-int8"], sizes=[160]))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
