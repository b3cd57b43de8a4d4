"""Named combinations of shipped models, backend and input size, shared by ``bench`` and ``eval``."""
from __future__ import annotations


#: name -> (detector file, classifier file, longest input side for a dynamic-shape detector)
VARIANTS = {
    "litert-int8-320": ("retinaface_mnv2_320_int8.tflite", "mask_mnv2_96_int8.tflite", None),
    "litert-fp32-320": ("retinaface_mnv2_320_fp32.tflite", "mask_mnv2_96_fp32.tflite", None),
    "litert-int8-640": ("retinaface_mnv2_640_int8.tflite", "mask_mnv2_96_int8.tflite", None),
    "litert-fp32-640": ("retinaface_mnv2_640_fp32.tflite", "mask_mnv2_96_fp32.tflite", None),
    "onnx-fp32-320": ("retinaface_mnv2_fp32.onnx", "mask_mnv2_96_fp32.onnx", 320),
    "onnx-fp32-640": ("retinaface_mnv2_fp32.onnx", "mask_mnv2_96_fp32.onnx", 640),
    "onnx-fp32-960": ("retinaface_mnv2_fp32.onnx", "mask_mnv2_96_fp32.onnx", 960),
    # the mask-aware detector fine-tuned on street scenes (convert train-detector)
    "litert-int8-320-mask": ("retinaface_mask_mnv2_320_int8.tflite", "mask_mnv2_96_int8.tflite", None),
    "litert-int8-640-mask": ("retinaface_mask_mnv2_640_int8.tflite", "mask_mnv2_96_int8.tflite", None),
    "onnx-fp32-320-mask": ("retinaface_mask_mnv2_fp32.onnx", "mask_mnv2_96_fp32.onnx", 320),
    "onnx-fp32-640-mask": ("retinaface_mask_mnv2_fp32.onnx", "mask_mnv2_96_fp32.onnx", 640),
    "onnx-fp32-960-mask": ("retinaface_mask_mnv2_fp32.onnx", "mask_mnv2_96_fp32.onnx", 960),
}


def present(models_dir=None) -> list[str]:
    """The variants whose detector and classifier files are both in ``models_dir`` (default: the
    shipped models; an installed wheel has only the defaults). Files are not hashed here: loading does that."""
    from maskwatch.edge.manifest import Manifest

    manifest = Manifest.load(models_dir)
    return [name for name, (detector, classifier, _) in VARIANTS.items()
            if all(f in manifest.entries and (manifest.directory / f).is_file() for f in (detector, classifier))]


def default_variant() -> str:
    """The variant of the models a device runs with no config (the two models the wheel ships)."""
    from maskwatch.edge.classifier import DEFAULT_CLASSIFIER
    from maskwatch.edge.detector import DEFAULT_DETECTOR

    return next(name for name, (detector, classifier, _) in VARIANTS.items()
                if (detector, classifier) == (DEFAULT_DETECTOR, DEFAULT_CLASSIFIER))
