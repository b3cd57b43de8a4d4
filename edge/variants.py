"""Named combinations of shipped models, backend and input size, shared by ``bench`` and ``eval``."""

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
