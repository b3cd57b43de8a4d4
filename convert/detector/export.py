"""Exporting a fine-tuned, mask-aware RetinaFace through the format table, with manifest entries.

Files are named ``retinaface_mask_mnv2_<size>_<precision>.tflite`` and
``retinaface_mask_mnv2_<precision>.onnx``; int8 files are calibrated on letterboxed train-side
scenes (never the val side). Each entry lists the twelve outputs in order (nine face heads, then
``mask_8`` … ``mask_32``), the mask head's labels, the base weights and the data trained on, and
the file's own figures on the val scenes (face AP, mAP with the mask head's labels), measured
through the runtime that will run it.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from maskwatch.edge.detector import DEFAULT_DYNAMIC_SIZE, DetectorConfig, FaceDetector
from maskwatch.edge.errors import ConfigError
from maskwatch.edge.image import letterbox
from maskwatch.edge.labels import CLASSES
from maskwatch.edge.manifest import Manifest
from maskwatch.edge.postprocess import AnchorConfig

from maskwatch.convert.detector import graph as rg
from maskwatch.convert.export.artefacts import converter_versions, install
from maskwatch.convert.detector.train import EVAL_SCORE, Scene, figures, ground_truth
from maskwatch.convert.export.formats import ONNX_OPSET, ExportJob, check_request
from maskwatch.convert.detector.network import MASK_LABELS, KerasHeadsNetwork
from maskwatch.convert.weights.retinaface import SOURCE

log = logging.getLogger(__name__)

ARCHITECTURE = "retinaface-mobilenetv2-mask"
DEFAULT_FORMATS = ("tflite-fp32", "tflite-int8", "onnx-fp32")
DEFAULT_SIZES = (320, 640)
CALIBRATION_SCENES = 100


def file_name(precision: str, suffix: str, size: int | None) -> str:
    return f"retinaface_mask_mnv2_{size}_{precision}{suffix}" if size else f"retinaface_mask_mnv2_{precision}{suffix}"


def calibration_tensors(scenes: list[Scene], size: int, count: int = CALIBRATION_SCENES) -> list[np.ndarray]:
    """Float32 (1, size, size, 3) letterboxed train-side scenes, evenly spread."""
    train = [s for s in scenes if s.split == "train"]
    if not train:
        raise ConfigError("int8 calibration needs train-side scenes")
    chosen = [train[i] for i in np.unique(np.linspace(0, len(train) - 1, min(count, len(train))).round().astype(int))]
    return [letterbox(s.pixels, size, size, rgb=False)[0][None].astype(np.float32) for s in chosen]


def file_figures(path: Path, scenes: list[Scene], size: int) -> dict | None:
    """The exported file's face AP and mAP on the val scenes, through its runtime (None without val)."""
    val = [s for s in scenes if s.split == "val"]
    if not val:
        return None
    detector = FaceDetector.from_config(DetectorConfig(model=str(path), score_threshold=EVAL_SCORE, input_size=size))
    predictions = {}
    for scene in val:
        faces = detector.detect(np.ascontiguousarray(scene.pixels[..., ::-1]))  # the runtime takes BGR
        best = faces.mask.argmax(axis=1)
        predictions[scene.path.name] = {"boxes": faces.boxes, "scores": faces.scores * faces.mask.max(axis=1),
                                        "labels": [CLASSES[b] for b in best], "face_scores": faces.scores}
    return {"input_size": size, "val_scenes": len(val), **figures(ground_truth(val), predictions)}


def export_detector(model, scenes: list[Scene], out: Path, formats=DEFAULT_FORMATS, sizes=DEFAULT_SIZES,
                    datasets: list[str] | None = None, training: dict | None = None, opset: int = ONNX_OPSET,
                    graph_sha256: str = SOURCE["sha256"], anchor_config: AnchorConfig = AnchorConfig()) -> list[str]:
    """Write each format (and size) of ``model`` (trained against ``anchor_config``) into ``out`` with its
    manifest entry; the names written."""
    chosen = check_request(list(formats), set())
    network = KerasHeadsNetwork(model)
    manifest = Manifest.load(out)
    source = {"base": dict(SOURCE, sha256=graph_sha256), "trained_on": datasets or [],
              "training": {k: v for k, v in (training or {}).items() if k != "epochs"}}
    written = []
    for fmt in chosen:
        for size in [None] if fmt.dynamic else sizes:
            side = size or DEFAULT_DYNAMIC_SIZE
            job = ExportJob(network, size, size, opset=opset)
            calibration = None
            if fmt.calibrated:
                job.calibration = calibration_tensors(scenes, side)
                calibration = {"scenes": len(job.calibration), "split": "train", "input_size": [side, side],
                               "folders": datasets or []}
            started = time.perf_counter()
            blob = fmt.export(job)
            name = file_name(fmt.precision, fmt.suffix, size)
            converter = dict(converter_versions(), **({"opset": opset} if fmt.suffix == ".onnx" else {}))
            entry = install(manifest, name, blob, fmt, task="face_detection", architecture=ARCHITECTURE,
                            preprocessing=rg.PREPROCESSING, outputs=network.output_names,
                            anchors=anchor_config.to_dict(), labels=list(MASK_LABELS), source=source,
                            converter=converter, calibration=calibration)
            figures = file_figures(out / name, scenes, side)
            if figures:
                manifest.entries[name] = entry.model_copy(update={"metrics": {"val": figures}})
                manifest.save()
            log.info("%s: %s in %.1f s, %.2f MB; val %s", name, fmt.key, time.perf_counter() - started,
                     len(blob) / 1e6, {k: v for k, v in (figures or {}).items() if k != "ap"})
            written.append(name)
    return written
