"""tflite-runtime 2.14 (Raspberry Pi OS Bookworm) as the LiteRT fallback.

Runs in CI's second, small environment (numpy<2, tflite-runtime, no
ai-edge-litert, no TensorFlow); skips where tflite_runtime is not installed.
"""
import importlib.util

import pytest

pytest.importorskip("tflite_runtime", reason="tflite-runtime is not installed in this environment")

from maskwatch.edge.detector import FaceDetector  # noqa: E402
from maskwatch.edge.image import read_image  # noqa: E402
from maskwatch.edge.runtimes.litert import interpreter_module  # noqa: E402


def test_falls_back_to_tflite_runtime_when_litert_is_absent():
    if importlib.util.find_spec("ai_edge_litert") is not None:
        pytest.skip("ai_edge_litert is installed here, so it is preferred")
    assert interpreter_module().__name__ == "tflite_runtime.interpreter"


@pytest.mark.parametrize("name", ["retinaface_mask_mnv2_320_int8.tflite", "retinaface_mnv2_320_int8.tflite",
                                  "retinaface_mnv2_320_fp32.tflite"])
def test_shipped_detector_runs_on_tflite_runtime(name, sample_image):
    detector = FaceDetector(name, library="tflite_runtime")
    assert detector.runtime.library == "tflite_runtime"
    assert len(detector.detect(read_image(sample_image))) == 1
