"""The export formats: one table decides what each format is and which options it takes."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from maskwatch.edge.errors import ConfigError, ConversionError

#: ONNX opsets known to convert and run; tf2onnx 1.17 fails at 21.
ONNX_OPSETS = range(13, 18)
#: The opset of every ONNX export unless told otherwise: the newest of ONNX_OPSETS.
ONNX_OPSET = ONNX_OPSETS[-1]


@dataclass(frozen=True)
class ExportFormat:
    key: str
    suffix: str
    precision: str
    dynamic: bool  #: input height and width chosen at run time (else one file per size)
    calibrated: bool  #: needs real calibration images
    options: frozenset[str]  #: command-line options that apply to it
    export: Callable  #: (job) -> bytes


@dataclass
class ExportJob:
    """What an exporter needs: the network, an input size and calibration tensors.

    ``network`` offers ``concrete(height, width)`` (a TensorFlow concrete function
    with one float input named ``image`` returning a dict of named outputs) and
    ``onnx(opset, height, width)`` (an ONNX ModelProto; None sizes are dynamic).
    """

    network: object
    height: int | None
    width: int | None
    calibration: list[np.ndarray] | None = None
    opset: int = ONNX_OPSET
    per_channel: bool = True


def _tflite(job: ExportJob, mode: str) -> bytes:
    import tensorflow as tf

    concrete = job.network.concrete(job.height, job.width)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], job.network)
    if mode == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([t] for t in job.calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8  # feed raw pixels; the scale comes out as 1, zero point 0
        converter.inference_output_type = tf.float32
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises ConverterError and friends
        raise ConversionError(f"TFLite {mode} conversion failed: {str(exc).splitlines()[0]}") from None


def _onnx_fp32(job: ExportJob) -> bytes:
    try:
        proto = job.network.onnx(job.opset, job.height, job.width)
    except Exception as exc:
        raise ConversionError(f"tf2onnx (opset {job.opset}) failed: {str(exc).splitlines()[0]}") from None
    _name_io(proto, ["image"], job.network.output_names)
    return proto.SerializeToString()


def _name_io(proto, inputs: list[str], outputs: list[str]) -> None:
    """Give the graph's inputs and outputs our names, in order (tf2onnx leaves 'x:0', 'Identity:0')."""
    constants = {t.name for t in proto.graph.initializer}
    feeds = [v for v in proto.graph.input if v.name not in constants]
    renames = {v.name: new for v, new in zip([*feeds, *proto.graph.output], [*inputs, *outputs])}
    for value in [*feeds, *proto.graph.output]:
        value.name = renames[value.name]
    for node in proto.graph.node:
        node.input[:] = [renames.get(i, i) for i in node.input]
        node.output[:] = [renames.get(o, o) for o in node.output]


def _onnx_int8(job: ExportJob) -> bytes:
    from maskwatch.edge.runtimes.onnx import onnxruntime_module

    onnxruntime_module()  # telemetry off before the first import (see maskwatch.edge.runtimes.onnx)
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter({"image": t} for t in job.calibration)

        def get_next(self):
            return next(self._items, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared, int8 = (Path(tmp) / n for n in ("fp32.onnx", "prep.onnx", "int8.onnx"))
        fp32.write_bytes(_onnx_fp32(job))
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        try:
            quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=job.per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
        except Exception as exc:
            raise ConversionError(f"ONNX int8 quantization failed: {str(exc).splitlines()[0]}") from None
        return int8.read_bytes()


_FIXED = frozenset({"sizes"})
FORMATS: dict[str, ExportFormat] = {f.key: f for f in [
    ExportFormat("tflite-fp32", ".tflite", "fp32", False, False, _FIXED, lambda j: _tflite(j, "fp32")),
    ExportFormat("tflite-fp16", ".tflite", "fp16", False, False, _FIXED, lambda j: _tflite(j, "fp16")),
    ExportFormat("tflite-int8", ".tflite", "int8", False, True, _FIXED | {"calib", "calib_count", "calib_split"},
                 lambda j: _tflite(j, "int8")),
    ExportFormat("onnx-fp32", ".onnx", "fp32", True, False, frozenset({"opset"}), _onnx_fp32),
    ExportFormat("onnx-int8", ".onnx", "int8", True, True,
                 frozenset({"opset", "calib", "calib_count", "calib_split", "per_channel"}), _onnx_int8),
]}
#: What ``convert retinaface`` writes when no --formats are given (what models/ ships).
DEFAULT_FORMATS = ("tflite-fp32", "tflite-int8", "onnx-fp32")


def check_request(formats: list[str], given_options: set[str]) -> list[ExportFormat]:
    """The chosen formats; ConfigError for an unknown format or an option none of them takes."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown format {unknown[0]!r}; choose from: {', '.join(FORMATS)}")
    chosen = [FORMATS[f] for f in dict.fromkeys(formats)]
    for option in sorted(given_options):
        if not any(option in f.options for f in chosen):
            takers = [f.key for f in FORMATS.values() if option in f.options]
            raise ConfigError(f"--{option.replace('_', '-')} applies to {', '.join(takers)}, "
                              f"not to the chosen format(s) {', '.join(f.key for f in chosen)}")
    return chosen
