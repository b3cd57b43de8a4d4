"""ONNX Runtime backend: providers by preference (TensorRT, CUDA, CPU) or as given.

ONNX Runtime 1.29 and later upload telemetry on Linux too (a device id under
``~/.cache/Microsoft``, session and model events), unless ``ORT_DISABLE_TELEMETRY=1`` is set
before it is first imported. maskwatch sets it, for every import through
:func:`onnxruntime_module`: nothing about a pole leaves it but its own events. A user who
wants the telemetry sets ``ORT_DISABLE_TELEMETRY=0`` themselves.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from ..errors import ModelError, RuntimeUnavailable

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def onnxruntime_module(name: str = "onnxruntime"):
    """``onnxruntime`` (or one of its submodules), imported with its telemetry off unless the user chose."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    return importlib.import_module(name)


class OnnxRuntime:
    """Runs a ``.onnx`` file; outputs keyed by the graph's output names."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None, providers: list[str] | None = None):
        try:
            ort = onnxruntime_module()
        except ImportError:
            raise RuntimeUnavailable("ONNX Runtime is not installed: pip install onnxruntime "
                                     "(on a Jetson, NVIDIA's onnxruntime-gpu wheel)") from None
        available = ort.get_available_providers()
        if providers:
            missing = [p for p in providers if p not in available]
            if missing:
                raise RuntimeUnavailable(f"ONNX Runtime provider(s) {', '.join(missing)} not available here; available: {', '.join(available)}")
        else:
            providers = [p for p in PREFERRED_PROVIDERS if p in available]
        ort.set_default_logger_severity(3)  # errors only: tf2onnx's Resize attributes warn on every load
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
        self.providers = self._session.get_providers()
        (model_input,) = self._session.get_inputs()
        self.input_name = model_input.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in model_input.shape)
        self.input_dtype = np.dtype(_ONNX_TYPES.get(model_input.type, np.float32))
        self.input_quantization = None
        self._output_names = [o.name for o in self._session.get_outputs()]

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, {self.input_name: tensor})
        return dict(zip(self._output_names, values))
