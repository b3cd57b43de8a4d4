"""LiteRT backend: ``ai_edge_litert``, falling back to ``tflite_runtime``.

Raspberry Pi OS Bookworm images often carry ``tflite-runtime`` 2.14 rather
than LiteRT; both expose the same ``Interpreter``. The library is imported
here, when a model is loaded, never at module import.
"""
from __future__ import annotations

import ctypes
import importlib
import os
from pathlib import Path

import numpy as np

from ..errors import ModelError, RuntimeUnavailable

#: Interpreter modules tried in order; MASKWATCH_LITERT names one to force it.
LIBRARIES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
#: Delegates by name -> shared library loaded with ``load_delegate`` (XNNPACK is built in: no library).
DELEGATES = {
    "xnnpack": None,
    "edgetpu": "libedgetpu.so.1",
    "gpu": "libtensorflowlite_gpu_delegate.so",
}


def interpreter_module(library: str | None = None):
    """The first importable interpreter module (or the one named)."""
    wanted = library or os.environ.get("MASKWATCH_LITERT")
    names = [n for n in LIBRARIES if wanted is None or n.split(".")[0] == wanted]
    if not names:
        raise RuntimeUnavailable(f"MASKWATCH_LITERT={wanted!r} is not one of: ai_edge_litert, tflite_runtime")
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise RuntimeUnavailable(
        "LiteRT is not installed: pip install ai-edge-litert (or tflite-runtime on Raspberry Pi OS)"
    )


def load_delegate(module, name: str):
    """The named delegate, loaded from its shared library; RuntimeUnavailable naming the library if missing."""
    library = DELEGATES[name]
    try:
        ctypes.CDLL(library)  # check first: a failed load_delegate leaves a half-built Delegate that errors on exit
        return module.load_delegate(library)
    except (ValueError, OSError, RuntimeError) as exc:
        raise RuntimeUnavailable(f"LiteRT delegate {name}: cannot load {library} ({str(exc).splitlines()[0] or 'not found'})") from None


class LiteRTRuntime:
    """Runs a ``.tflite`` file; outputs keyed by its signature's output names."""

    name = "litert"

    def __init__(self, path: Path, threads: int | None = None, library: str | None = None, delegate: str | None = None):
        module = interpreter_module(library)
        self.library = module.__name__.split(".")[0]
        delegates = [load_delegate(module, delegate)] if delegate and DELEGATES.get(delegate) else []
        if delegate and delegate not in DELEGATES:
            raise RuntimeUnavailable(f"LiteRT delegate {delegate!r} is not one of: {', '.join(DELEGATES)}")
        self.delegate = delegate or "xnnpack"
        try:
            self._interpreter = module.Interpreter(model_path=str(path), num_threads=threads,
                                                   experimental_delegates=delegates or None)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: LiteRT cannot load it ({str(exc).splitlines()[0]})") from None
        signatures = self._interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ModelError(f"{path}: expected one signature, found {sorted(signatures)}")
        key, signature = next(iter(signatures.items()))
        runner = self._interpreter.get_signature_runner(key)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one input, found {sorted(inputs)}")
        self.input_name, detail = next(iter(inputs.items()))
        self._input_index = detail["index"]
        self.input_shape = tuple(int(d) for d in detail["shape"])
        self.input_dtype = np.dtype(detail["dtype"])
        scale, zero = detail["quantization"]
        self.input_quantization = (float(scale), int(zero)) if scale else None
        self._outputs = [(n, d["index"], d["quantization"]) for n, d in outputs.items()]

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        it = self._interpreter
        it.set_tensor(self._input_index, tensor)
        it.invoke()
        result = {}
        for name, index, (scale, zero) in self._outputs:
            value = it.get_tensor(index)
            result[name] = (value.astype(np.float32) - zero) * scale if scale else value
        return result
