"""Inference runtimes, chosen by name; each backend is one module.

A runtime wraps one model file and has one method, ``run(tensor)``, which
returns the model's outputs as a dict of numpy arrays keyed by output name.
:func:`to_input` turns 0..255 pixels into the tensor a runtime's input wants
(float32, or quantized with the input's scale and zero point), for every model.
The runtime libraries are imported only when a backend is built, so a device
without ONNX Runtime can still use LiteRT and the other way round.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ConfigError, ModelError
from ..registry import Entry, Registry

#: backend name -> its class, with the model file suffixes it runs; ``auto`` picks by suffix
BACKENDS = Registry("backend", {
    "litert": Entry("maskwatch.edge.runtimes.litert:LiteRTRuntime", (".tflite",)),
    "onnx": Entry("maskwatch.edge.runtimes.onnx:OnnxRuntime", (".onnx",)),
}, choices_before=("auto",))


class Runtime(Protocol):
    name: str
    input_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: np.dtype
    input_quantization: tuple[float, int] | None

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]: ...


#: the names a config or the CLI may give for a backend
BACKEND_CHOICES = BACKENDS.choices


def to_input(pixels: np.ndarray, runtime: Runtime) -> np.ndarray:
    """0..255 pixels (any shape, uint8 or float) as ``runtime``'s input dtype: float32 as they are, or
    ``round(pixels / scale + zero)`` clipped to the integer type (uint8 with (1, 0) passes unchanged)."""
    dtype, quantization = runtime.input_dtype, runtime.input_quantization
    if dtype == np.float32:
        return pixels.astype(np.float32)
    scale, zero = quantization or (1.0, 0)
    if (scale, zero) == (1.0, 0) and dtype == np.uint8 and pixels.dtype == np.uint8:
        return pixels
    info = np.iinfo(dtype)
    return np.clip(np.round(pixels / scale + zero), info.min, info.max).astype(dtype)


def backend_for(path: str | Path, backend: str = "auto") -> str:
    """The backend that runs ``path``: the one named, or the one for its suffix."""
    suffix = Path(path).suffix
    if backend == "auto":
        for name in BACKENDS:
            if suffix in BACKENDS[name].info:
                return name
        raise ConfigError(f"{path}: no runtime runs {suffix or 'suffix-less'} files")
    suffixes = BACKENDS[backend].info  # an unknown backend is a one-line ConfigError here
    if suffix not in suffixes:
        raise ConfigError(f"{path}: backend {backend} runs {'/'.join(suffixes)} files, not {suffix}")
    return backend


def load_runtime(path: str | Path, backend: str = "auto", expected_shape=None, **options) -> Runtime:
    """Build the runtime for a model file; options go to the backend (threads, delegate, providers).

    ``expected_shape`` (the manifest's input shape, None for dynamic dimensions) must match the
    model's own input, or the model is refused with a ModelError naming the file.
    """
    runtime = BACKENDS.load(backend_for(path, backend))(Path(path), **options)
    if expected_shape is not None and [d or None for d in runtime.input_shape] != [d or None for d in expected_shape]:
        raise ModelError(f"{path}: input shape {list(runtime.input_shape)} differs from the manifest's {list(expected_shape)}")
    return runtime
