"""The pipeline's typed seams: Protocols the shipped parts satisfy, model sections with from_config,
one input quantization, the source registry (sample and options), a preview on a larger display picture."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from maskwatch.edge import interfaces
from maskwatch.edge.app import build_source, run
from maskwatch.edge.classifier import ClassifierConfig, MaskClassifier
from maskwatch.edge.config import SourceConfig, load_config
from maskwatch.edge.detector import DetectorConfig, FaceDetector
from maskwatch.edge.errors import ConfigError
from maskwatch.edge.events import Fanout
from maskwatch.edge.preview import VideoPreview
from maskwatch.edge.runtimes import BACKENDS, to_input
from maskwatch.edge.gpio import Indicator
from maskwatch.edge.sources import Frame, open_source, source_kind
from maskwatch.edge.tracker import Track


def test_the_shipped_parts_satisfy_the_pipeline_protocols():
    detector = FaceDetector.from_config(DetectorConfig(model="retinaface_mask_mnv2_320_int8.tflite"))
    classifier = MaskClassifier.from_config(ClassifierConfig())
    assert isinstance(detector, interfaces.Detector) and detector.labels == classifier.labels
    assert isinstance(classifier, interfaces.Classifier)
    with Indicator({"backend": "none"}) as indicator:
        assert isinstance(indicator, interfaces.Indicator)
    assert isinstance(Fanout([]), interfaces.EventSink)
    assert issubclass(VideoPreview, interfaces.Preview)
    assert not isinstance(object(), interfaces.Detector)


def test_model_sections_share_runtime_fields_and_take_backends_from_the_registry():
    assert DetectorConfig(backend="onnx").backend == ClassifierConfig(backend="onnx").backend == "onnx"
    with pytest.raises(ValueError, match="'auto', " + " or ".join(repr(b) for b in BACKENDS)):
        DetectorConfig(backend="tensorflow")
    section = DetectorConfig(model="retinaface_mnv2_fp32.onnx", score_threshold=0.9, input_size=256)
    detector = FaceDetector.from_config(section)
    assert detector.input_size == 256 and detector.decoder.settings.score_threshold == 0.9
    assert ClassifierConfig(model="m.tflite", delegate="xnnpack").runtime_options() == {"delegate": "xnnpack"}
    assert ClassifierConfig(model="m.onnx", providers=["CPUExecutionProvider"]).runtime_options() == {
        "providers": ["CPUExecutionProvider"]}


def test_input_quantization_is_one_function_for_every_model():
    pixels = np.array([[0, 128, 255]], np.uint8)
    shipped = MaskClassifier.from_config(ClassifierConfig()).runtime  # uint8 input, scale 1, zero 0
    assert to_input(pixels, shipped) is pixels
    int8_input = SimpleNamespace(input_dtype=np.int8, input_quantization=(0.5, -100))  # e.g. an onnx-int8 export
    np.testing.assert_array_equal(to_input(pixels, int8_input), np.array([[-100, 127, 127]], np.int8))
    assert to_input(pixels.astype(np.float32) / 2, SimpleNamespace(input_dtype=np.int8, input_quantization=(1.0, 0))
                    ).tolist() == [[0, 64, 127]]
    fp32 = MaskClassifier.from_config(ClassifierConfig(model="mask_mnv2_96_fp32.tflite")).runtime
    assert to_input(pixels, fp32).dtype == np.float32


def test_sample_is_a_registry_row_with_options(tmp_path):
    assert source_kind("sample") == "sample"
    with open_source("sample", frames=3, width=320, height=240) as clip:
        frames = list(clip)
    assert [f.image.shape for f in frames] == [(240, 320, 3)] * 3
    with pytest.raises(ConfigError, match="option timeout does not apply to sample sources"):
        open_source("sample", timeout=3)
    config = load_config(None, {"signal.backend": "mock", "device_id": "seams", "source.options": {"frames": 12}})
    assert run(config).frames == 12


def test_source_options_are_checked_once_in_the_config():
    with pytest.raises(ValueError, match="options.width: set source.width instead"):
        SourceConfig(options={"width": 320})
    assert SourceConfig(options={"props": {"15": -6}}).options["props"] == {15: -6.0}
    with pytest.raises(ValueError, match="options.props"):
        SourceConfig(options={"props": {"exposure": "low"}})
    config = load_config(None, {"source.spec": "sample", "source.options": {"preview_size": [1280, 960]}})
    with pytest.raises(ConfigError, match="preview_size does not apply to sample"):
        build_source(config.model_copy(update={"preview": config.preview.model_copy(update={"target": "x.mp4"})}))
    assert build_source(config).frames == 90  # without a preview the main-stream option is not passed on


def test_a_preview_draws_on_the_display_picture_with_boxes_scaled(tmp_path):
    small = np.zeros((120, 160, 3), np.uint8)
    display = np.zeros((240, 320, 3), np.uint8)
    track = Track(1, np.array([10, 10, 50, 50], np.float32), 0.9, 0, 0, label="without_mask", label_score=0.9)
    path = tmp_path / "preview.avi"
    preview = VideoPreview(path, fps=5)
    for i in range(3):
        preview.show(Frame(small, i, 0.0, "test", display=display), [track], "unmasked", 5.0)
    preview.close()
    capture = cv2.VideoCapture(str(path))
    ok, image = capture.read()
    capture.release()
    assert ok and image.shape == (240, 320, 3)
    red = image[:, :, 2].astype(int) - image[:, :, 1].astype(int)
    ys, xs = np.nonzero(red[30:, :] > 100)  # the box outline (below the state text), in display pixels
    assert xs.min() == pytest.approx(20, abs=3) and xs.max() == pytest.approx(100, abs=3)
