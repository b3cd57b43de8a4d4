"""ONNX Runtime backend: providers by preference (TensorRT, CUDA, CPU) or as given."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError, RuntimeUnavailable

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


class OnnxRuntime:
    """Runs a ``.onnx`` file; outputs keyed by the graph's output names."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None, providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailable("ONNX Runtime is not installed: pip install 'maskwatch[onnx]' "
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
