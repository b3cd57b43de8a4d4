"""``maskwatch convert retinaface``: the frozen graph to verified TFLite and ONNX files."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from maskwatch.edge.detector import DEFAULT_DYNAMIC_SIZE
from maskwatch.edge.errors import ConfigError
from maskwatch.edge.image import STRIDE_MULTIPLE
from maskwatch.edge.manifest import Manifest
from maskwatch.edge.postprocess import AnchorConfig

from maskwatch.convert.detector import graph as rg
from maskwatch.convert.export.artefacts import converter_versions, install
from maskwatch.convert.export.calibration import calibration_set, letterboxed_tensors
from maskwatch.convert.export.formats import DEFAULT_FORMATS, ONNX_OPSET, ExportJob, check_request
from maskwatch.convert.weights.retinaface import SOURCE, graph_bytes

log = logging.getLogger(__name__)
ARCHITECTURE = "retinaface-mobilenetv2"
MAX_SIZE = 2048


@dataclass
class ConvertRequest:
    out: Path
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    sizes: list[int] = field(default_factory=lambda: [320, 640])
    calib: Path | None = None
    calib_count: int = 100
    calib_split: str = "train"
    graph: Path | None = None
    cache: Path | None = None
    trust_graph: bool = False
    opset: int = ONNX_OPSET
    per_channel: bool = True
    given_options: set[str] = field(default_factory=set)  #: options the user set explicitly


def check_sizes(sizes: list[int]) -> None:
    for size in sizes:
        if size % STRIDE_MULTIPLE or not STRIDE_MULTIPLE <= size <= MAX_SIZE:
            raise ConfigError(f"--sizes {size}: must be a multiple of {STRIDE_MULTIPLE} between {STRIDE_MULTIPLE} and {MAX_SIZE}")


def file_name(precision: str, suffix: str, size: int | None) -> str:
    return f"retinaface_mnv2_{size}_{precision}{suffix}" if size else f"retinaface_mnv2_{precision}{suffix}"


def run(request: ConvertRequest) -> list[str]:
    """Export every requested format and size; returns the file names written.

    All inputs (formats, options, sizes, calibration folder, graph) are checked
    before anything is written; each model is written to a temporary file,
    loaded back, then renamed into place with its manifest entry.
    """
    from maskwatch.convert.export.formats import ONNX_OPSETS

    chosen = check_request(request.formats, request.given_options)
    check_sizes(request.sizes)
    if request.opset not in ONNX_OPSETS:
        raise ConfigError(f"--opset {request.opset}: tf2onnx 1.17 converts this graph at opsets {ONNX_OPSETS.start}-{ONNX_OPSETS.stop - 1}")
    calibrated = [f.key for f in chosen if f.calibrated]
    calib_files = []
    if calibrated:
        if request.calib is None:
            raise ConfigError(f"{', '.join(calibrated)} needs --calib DIR of real images; maskwatch never calibrates on noise")
        calib_files = calibration_set(request.calib, request.calib_count, request.calib_split)
    data, digest = graph_bytes(request.graph, request.cache, request.trust_graph)
    graph_def = rg.parse_graph_def(data)
    network = rg.HeadsModel(graph_def)
    manifest = Manifest.load(request.out)
    source = dict(SOURCE, sha256=digest)
    written = []
    for fmt in chosen:
        for size in [None] if fmt.dynamic else request.sizes:
            side = size or DEFAULT_DYNAMIC_SIZE
            job = ExportJob(network, size, size, opset=request.opset, per_channel=request.per_channel)
            if fmt.calibrated:
                job.calibration = letterboxed_tensors(calib_files, side, side)
            started = time.perf_counter()
            blob = fmt.export(job)
            name = file_name(fmt.precision, fmt.suffix, size)
            calibration = None
            if fmt.calibrated:
                calibration = {"images": len(job.calibration), "folder": Path(request.calib).name,
                               "split": request.calib_split, "input_size": [side, side]}
            converter = dict(converter_versions(), **({"opset": request.opset} if fmt.suffix == ".onnx" else {}))
            install(manifest, name, blob, fmt, task="face_detection", architecture=ARCHITECTURE,
                    preprocessing=rg.PREPROCESSING, outputs=rg.OUTPUT_NAMES, anchors=AnchorConfig().to_dict(),
                    source=source, converter=converter, calibration=calibration)
            log.info("%s: %s in %.1f s, %.2f MB", name, fmt.key, time.perf_counter() - started, len(blob) / 1e6)
            written.append(name)
    return written
