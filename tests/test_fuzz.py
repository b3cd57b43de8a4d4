"""Property-based fuzzing of the inputs maskwatch reads: config, images, VOC annotations, odd frames.

The contract under test: any input gives either a result of the documented type or the one
documented error (``ConfigError`` / ``InputError``) as one line naming the file or key; never another
exception. Example counts are modest so the whole file runs in well under 30 s.
"""
from __future__ import annotations

import itertools
import json
import math
import string
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import REPO
from maskwatch.edge.config import Config, load_config
from maskwatch.edge.errors import ConfigError, InputError
from maskwatch.edge.image import read_image, to_bgr8
from maskwatch.edge.labels import CLASSES
from maskwatch.benchmarks.accuracy.voc import read_voc_annotations

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


#: One folder for every generated file of this module, removed when the run ends (atexit).
_SCRATCH = tempfile.TemporaryDirectory(prefix="mw-fuzz-")
_counter = itertools.count()


def scratch(name: str, data: bytes | str) -> Path:
    """A fresh file holding ``data`` (hypothesis reruns a test many times: no function-scoped tmp_path)."""
    folder = Path(_SCRATCH.name) / str(next(_counter))
    folder.mkdir()
    path = folder / name
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


def assert_one_line(exc: Exception, names: str) -> None:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    assert names in text, f"{names!r} not named in {text!r}"


# --- config ----------------------------------------------------------------------------------------

#: keys the config knows, mixed with junk, so generated trees hit real validation paths
KNOWN_KEYS = ["device_id", "models_dir", "source", "spec", "width", "height", "fps", "reconnect_backoff_s",
              "detector", "model", "backend", "threads", "score_threshold", "iou_threshold", "input_size",
              "delegate", "providers", "classifier", "tracker", "signal", "red_pin", "green_pin", "buzzer_pin",
              "events", "jsonl", "path", "max_bytes", "mqtt", "host", "port", "spool_dir", "spool_max_events",
              "summary_interval_s", "preview", "privacy", "save_crops", "crops_dir"]
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=8))
scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["0", "sample", "litert", "mock", "auto", "localhost"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
trees = st.dictionaries(keys, values, max_size=6)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string (lone surrogates make it invalid TOML)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(tree: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in tree.items())


def load_or_config_error(path: Path, overrides=None) -> Config | ConfigError:
    try:
        config = load_config(path, overrides)
    except ConfigError as exc:
        assert_one_line(exc, str(path))
        return exc
    assert isinstance(config, Config)
    return config


@FUZZ
@given(trees)
@example({})
@example({"events": {"mqtt": {"port": 2**80}}})
@example({"detector": {"score_threshold": float("nan")}})
@example({"source": {"fps": float("inf"), "width": -(2**70)}})
@example({"signal": {"red_pin": 2**64, "blink_s": 10**400}})
@example({"tracker": {"vote_agree": 2**63 - 1}})
def test_config_tree_is_a_config_or_a_one_line_config_error(tree):
    load_or_config_error(scratch("maskwatch.toml", toml_text(tree)))


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
@example("")
@example("[events.mqtt]\nport = 99999999999999999999999\n")
@example("device_id = \"x\"\n[source]\nspec = 1\n")
@example("[[source]]\nspec = 'a'\n")
def test_config_text_is_a_config_or_a_one_line_config_error(text):
    load_or_config_error(scratch("maskwatch.toml", text))


def test_config_binary_file_is_a_config_error():
    assert isinstance(load_or_config_error(scratch("maskwatch.toml", b"\xff\xfe\x00garbage")), ConfigError)


SECTIONS = ["source", "detector", "classifier", "tracker", "signal", "events", "events.mqtt", "events.jsonl",
            "preview", "privacy"]


@FUZZ
@given(st.sampled_from(SECTIONS), st.text(string.ascii_lowercase + "_", min_size=3, max_size=12))
def test_an_unknown_key_is_named(section, key):
    tree: dict = {"events": {"jsonl": {"path": "e.jsonl"}, "mqtt": {}}}
    node = tree
    for part in section.split("."):
        node = node.setdefault(part, {})
    if key in node or key in type(section_model(section)).model_fields:
        return
    node[key] = 1
    result = load_or_config_error(scratch("maskwatch.toml", toml_text(tree)))
    assert isinstance(result, ConfigError) and key in str(result) and "Extra inputs" in str(result)


def section_model(section: str):
    model = Config(events={"jsonl": {"path": "e.jsonl"}, "mqtt": {}})
    for part in section.split("."):
        model = getattr(model, part)
    return model


@FUZZ
@given(st.dictionaries(st.text(string.ascii_lowercase + "._", min_size=1, max_size=20), scalars, max_size=3))
@example({"source": 1, "source.spec": "x"})
@example({"events.mqtt.port": 0})
@example({"device_id.x": "y"})
def test_overrides_are_a_config_or_a_one_line_config_error(overrides):
    try:
        config = load_config(None, overrides)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(config, Config)


# --- images ----------------------------------------------------------------------------------------


def encoded(image: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def check_bgr8(image, shape) -> None:
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (*shape, 3)


@pytest.mark.parametrize("name, image", [
    ("one.png", np.full((1, 1, 3), 200, np.uint8)),
    ("grey.png", np.arange(12, dtype=np.uint8).reshape(3, 4)),
    ("rgba.png", np.full((5, 7, 4), 100, np.uint8)),
    ("deep.png", np.full((6, 3), 65535, np.uint16)),
    ("deep_colour.png", np.full((2, 9, 3), 4096, np.uint16)),
    ("deep_rgba.png", np.full((2, 2, 4), 300, np.uint16)),
    ("one_row.jpg", np.zeros((1, 50, 3), np.uint8)),
    ("one_col.bmp", np.zeros((40, 1, 3), np.uint8)),
])
def test_read_image_odd_formats_give_bgr8(tmp_path, name, image):
    path = tmp_path / name
    path.write_bytes(encoded(image, path.suffix))
    out = read_image(path)
    check_bgr8(out, image.shape[:2])
    if image.dtype == np.uint16 and path.suffix == ".png":
        assert out.max() == int(image.max()) >> 8


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([".jpg", ".png", ".bmp", ".webp", ".tif", ""]))
@example(b"", ".jpg")
@example(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, ".png")
@example(b"\xff\xd8\xff\xe0" + b"\x00" * 20, ".jpg")
@example(b"P5\n2 2\n255\n\x00\x01\x02\x03", ".pgm")
def test_read_image_random_bytes_is_an_image_or_input_error(data, suffix):
    path = scratch("frame" + suffix, data)
    try:
        image = read_image(path)
    except InputError as exc:
        assert_one_line(exc, str(path))
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_read_image_missing_file_names_it(tmp_path):
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "nope.jpg")
    assert_one_line(info.value, str(tmp_path / "nope.jpg"))


arrays = st.tuples(
    st.sampled_from([np.uint8, np.uint16, np.int8, np.int32, np.float32, np.float64, np.bool_]),
    st.one_of(st.tuples(st.integers(0, 6), st.integers(0, 6)),
              st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)),
              st.tuples(st.integers(0, 3)), st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 3),
                                                      st.integers(1, 2))))


@FUZZ
@given(arrays)
def test_to_bgr8_is_bgr8_or_a_one_line_input_error(spec):
    dtype, shape = spec
    image = np.ones(shape, dtype)
    try:
        out = to_bgr8(image, "cam0")
    except InputError as exc:
        assert_one_line(exc, "cam0")
    else:
        check_bgr8(out, shape[:2])


@pytest.mark.parametrize("thing", [None, "frame.jpg", [[1, 2]], np.float64(3.0)])
def test_to_bgr8_rejects_non_arrays_with_input_error(thing):
    with pytest.raises(InputError) as info:
        to_bgr8(thing, "cam0")
    assert_one_line(info.value, "cam0")


def test_read_image_8000x6000_16bit_grey_stays_within_memory(tmp_path):
    """A 48-megapixel 16-bit grey PNG: 96 MB decoded, 144 MB as BGR; the peak stays a few copies of that."""
    path = tmp_path / "huge.png"
    image = np.zeros((6000, 8000), np.uint16)
    image[::97, ::89] = 65535
    path.write_bytes(encoded(image, ".png"))
    del image
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so the child would report pytest's own peak.
    code = ("import sys; from maskwatch.edge.image import read_image; img = read_image(sys.argv[1]); "
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]; "
            "print(img.shape, img.dtype, img.max(), hwm)")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "(6000, 8000, 3) uint8 255" in run.stdout
    peak_kib = int(run.stdout.split()[-1])  # the whole process: interpreter, numpy, OpenCV and the images
    assert peak_kib < 900 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB reading a 144 MB image"


# --- VOC annotations -------------------------------------------------------------------------------

#: NaN and infinity are left out: see test_voc_non_finite_numbers_are_input_errors (a known bug)
numbers = st.one_of(st.integers(-50, 700).map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
                    st.sampled_from(["", " ", "abc", "1e300", "-1e300", "12.5", "0", "1_0", "0x10", "3 4"]))
labels = st.one_of(st.sampled_from(CLASSES), st.sampled_from(["", "mask", "face", " with_mask "]),
                   st.text(max_size=6))


@st.composite
def voc_xml(draw) -> str:
    parts = ["<annotation>"]
    if draw(st.booleans()):
        parts.append(f"<filename>{escape(draw(st.text(string.ascii_letters + '._', max_size=10)))}</filename>")
    if draw(st.integers(0, 9)):
        parts.append("<size>" + "".join(f"<{k}>{escape(draw(numbers))}</{k}>" for k in ("width", "height")
                                         if draw(st.integers(0, 9))) + "<depth>3</depth></size>")
    for _ in range(draw(st.integers(0, 4))):
        obj = ["<object>"]
        if draw(st.integers(0, 9)):
            obj.append(f"<name>{escape(draw(labels))}</name>")
        if draw(st.integers(0, 9)):
            obj.append("<bndbox>" + "".join(f"<{k}>{escape(draw(numbers))}</{k}>"
                                            for k in ("xmin", "ymin", "xmax", "ymax") if draw(st.integers(0, 9)))
                       + "</bndbox>")
        parts.append("".join(obj) + "</object>")
    parts.append("</annotation>")
    text = "".join(parts)
    if draw(st.integers(0, 5)) == 0:  # malformed: cut somewhere, or a different root
        text = draw(st.sampled_from([text[: draw(st.integers(0, len(text)))], text.replace("annotation", "voc")]))
    return text


def read_voc_or_input_error(path: Path):
    try:
        ann = read_voc_annotations(path)
    except InputError as exc:
        assert_one_line(exc, str(path))
        return exc
    assert ann.width > 0 and ann.height > 0
    assert ann.boxes.dtype == np.float32 and ann.boxes.shape == (len(ann.labels), 4)
    assert set(ann.labels) <= set(CLASSES)
    if len(ann.boxes):
        x1, y1, x2, y2 = ann.boxes.T
        assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= ann.width).all() and (y2 <= ann.height).all()
        assert (x2 > x1).all() and (y2 > y1).all()
    return ann


@FUZZ
@given(voc_xml())
@example("<annotation><size><width>10</width><height>10</height></size><object><name>with_mask</name>"
         "<bndbox><xmin>20</xmin><ymin>20</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>")
@example("<annotation><size><width>10</width><height>10</height></size><object><name>with_mask</name>"
         "<bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object></annotation>")
@example("<annotation><size><width>10.5</width><height>10</height></size></annotation>")
@example("<annotation><size><width>1e300</width><height>10</height></size></annotation>")
@example("")
def test_voc_xml_is_annotations_or_a_one_line_input_error(xml):
    read_voc_or_input_error(scratch("ann.xml", xml))


SIZE_10 = "<size><width>10</width><height>10</height></size>"


@pytest.mark.parametrize("xml", [
    "<annotation><size><width>nan</width><height>10</height></size></annotation>",
    "<annotation><size><width>10</width><height>inf</height></size></annotation>",
    "<annotation><size><width>1e400</width><height>10</height></size></annotation>",
    f"<annotation>{SIZE_10}<object><name>with_mask</name><bndbox><xmin>nan</xmin><ymin>0</ymin>"
    "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>",
])
def test_voc_non_finite_numbers_are_input_errors(tmp_path, xml):
    path = tmp_path / "ann.xml"
    path.write_text(xml)
    assert isinstance(read_voc_or_input_error(path), InputError)


@FUZZ
@given(st.binary(max_size=200))
def test_voc_random_bytes_are_an_input_error(data):
    read_voc_or_input_error(scratch("ann.xml", data))


def test_voc_missing_file_is_an_input_error(tmp_path):
    assert isinstance(read_voc_or_input_error(tmp_path / "none.xml"), InputError)


# --- the face detector on odd frames ------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector():
    from maskwatch.edge.detector import FaceDetector
    from maskwatch.edge.errors import ModelError, RuntimeUnavailable

    try:
        return FaceDetector("retinaface_mnv2_320_int8.tflite")
    except (ModelError, RuntimeUnavailable, FileNotFoundError) as exc:
        pytest.skip(f"detector unavailable: {exc}")


def check_faces(faces, height: int, width: int) -> None:
    n = len(faces)
    assert faces.boxes.dtype == np.float32 and faces.boxes.shape == (n, 4)
    assert faces.scores.dtype == np.float32 and faces.scores.shape == (n,)
    assert faces.landmarks.dtype == np.float32 and faces.landmarks.shape == (n, 5, 2)
    if n:
        assert np.isfinite(faces.boxes).all() and (faces.boxes >= 0).all()
        assert (faces.boxes[:, 0::2] <= width).all() and (faces.boxes[:, 1::2] <= height).all()
        assert ((faces.scores >= 0) & (faces.scores <= 1)).all()


@pytest.mark.parametrize("shape, dtype", [
    ((1, 1, 3), np.uint8), ((1, 640, 3), np.uint8), ((480, 1, 3), np.uint8), ((1, 1), np.uint8),
    ((240, 320), np.uint8), ((200, 300, 4), np.uint8), ((120, 160, 3), np.uint16), ((6000, 8000, 3), np.uint8),
])
def test_detector_odd_frames_give_typed_faces(detector, shape, dtype):
    frame = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    check_faces(detector.detect(frame), *shape[:2])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 900), st.integers(1, 900), st.sampled_from([None, 1, 3, 4]), st.integers(0, 2**32 - 1))
def test_detector_random_frames_give_typed_faces(detector, height, width, channels, seed):
    shape = (height, width) if channels is None else (height, width, channels)
    frame = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    check_faces(detector.detect(frame), height, width)


def test_detector_rejects_a_non_image_frame_with_input_error(detector):
    with pytest.raises(InputError) as info:
        detector.detect(np.zeros((0, 10, 3), np.uint8))
    assert "\n" not in str(info.value)


# --- values that pass a type check and would break the run -------------------------------------------

@pytest.mark.parametrize("key, value, named", [
    ("source.reconnect_backoff_s", [0], "reconnect_backoff_s"), ("source.reconnect_backoff_s", [-1], "reconnect_backoff_s"),
    ("device_id", "x" * 300, "device_id"), ("device_id", "pole/7", "device_id"), ("device_id", "", "device_id"),
    ("signal.red_pin", True, "red_pin"), ("detector.input_size", 100000, "input_size"),
    ("detector.input_size", 7, "input_size")])
def test_values_that_would_break_the_run_are_refused_by_the_config(key, value, named):
    with pytest.raises(ConfigError) as err:
        load_config(None, {key: value})
    assert_one_line(err.value, named)


@pytest.mark.parametrize("argv, named", [
    (["run", "--max-frames", "-1"], "--max-frames"), (["detect", "--input-size", "7"], "--input-size"),
    (["detect", "--input-size", "-64"], "--input-size"), (["predict", "x.jpg", "--jsonl", "-", "--threshold", "5"], "--threshold")])
def test_out_of_range_options_are_one_line_usage_errors(argv, named, capsys):
    from maskwatch.edge.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert named in last and last.startswith("maskwatch"), last


@pytest.mark.parametrize("text, expected", [
    ("broker.local", {"host": "broker.local"}), ("10.0.0.2:1884", {"host": "10.0.0.2", "port": 1884}),
    ("[::1]:1883", {"host": "::1", "port": 1883}), ("[fe80::2]", {"host": "fe80::2"})])
def test_mqtt_broker_forms(text, expected):
    from maskwatch.edge.commands.run import broker

    assert broker(text) == expected


@pytest.mark.parametrize("text", ["host:abc", ":1883", "", "host:0", "host:70000", "::1:1883", "[::1", "[::1]x"])
def test_bad_mqtt_brokers_are_one_line_usage_errors(text, capsys):
    from maskwatch.edge.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--mqtt", text])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--mqtt" in last and "Traceback" not in last, last


@pytest.mark.parametrize("target, named", [("https://0.0.0.0:8443", "https://"), ("rtsp://x", "rtsp://"),
                                           ("http://127.0.0.1:70000", "port"), ("http://127.0.0.1:0", "port")])
def test_preview_targets_that_are_neither_a_file_nor_http_are_refused(target, named):
    with pytest.raises(ConfigError) as err:
        load_config(None, {"preview.target": target})
    assert_one_line(err.value, named)


def test_a_preview_port_in_use_is_a_one_line_error():
    import socket as sockets

    from maskwatch.edge.preview import open_preview

    with sockets.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError) as err:
            open_preview(f"http://127.0.0.1:{taken.getsockname()[1]}")
    assert_one_line(err.value, "cannot listen there")


@pytest.mark.parametrize("name", ["../x.service", "/etc/systemd/system/evil.service", "maskwatch", "a b.service"])
def test_service_names_that_are_paths_are_refused(name, capsys):
    from maskwatch.edge.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["service", "install", "--dry-run", "--name", name])
    assert exit_.value.code == 2
    assert "--name" in capsys.readouterr().err.strip().splitlines()[-1]
