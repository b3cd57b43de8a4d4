"""Keras MobileNetV2 carrying torchvision's ImageNet weights.

torchvision's ``mobilenet_v2`` maps one-to-one onto ``keras.applications.MobileNetV2``
(alpha 1.0) once the Keras graph computes what torch computes:

* every stride-2 3x3 convolution pads one pixel on all four sides (torch's
  ``padding=1``). Keras pads ``(0, 1)`` instead: ``Conv1`` uses ``padding="same"``
  and the four stride-2 depthwise blocks a ``ZeroPadding2D((0, 1), (0, 1))``. The
  rebuilt graph puts a symmetric ``ZeroPadding2D`` named ``Conv1_pad`` before a
  ``valid`` ``Conv1`` and makes the four block pads ``((1, 1), (1, 1))``;
* every BatchNormalization has torch's epsilon, 1e-5 (Keras: 1e-3).

The built model starts with a ``Normalization`` layer named ``preprocess`` that does
torchvision's preprocessing, so it takes **RGB float32 pixels in [0, 255]**, shape
``(batch, input_size, input_size, 3)``; see :func:`torchvision_normalize` for the same
arithmetic in numpy.
"""
from __future__ import annotations

import copy

import numpy as np

from maskwatch.convert.weights.torch_checkpoint import load_state_dict
from maskwatch.edge.errors import ConversionError

#: torchvision's ImageNet normalisation, on RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCH_BN_EPSILON = 1e-5


def torchvision_normalize(rgb: np.ndarray) -> np.ndarray:
    """torchvision's preprocessing of RGB pixels in [0, 255]: ``(x / 255 - mean) / std``."""
    return ((np.asarray(rgb, np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def _layer_entry(layer, name: str, inbound_template: list, source: str) -> dict:
    """A functional-config entry for ``layer``, called on the output of layer ``source``."""
    from keras import saving

    entry = saving.serialize_keras_object(layer)
    entry["name"] = name
    entry.pop("build_config", None)
    nodes = copy.deepcopy(inbound_template)
    nodes[0]["args"][0]["config"]["keras_history"] = [source, 0, 0]
    entry["inbound_nodes"] = nodes
    return entry


def _torch_layout_config(config: dict) -> dict:
    """``config`` of a Keras MobileNetV2, changed to compute what torchvision's does."""
    from keras import layers

    config = copy.deepcopy(config)
    entries = []
    for entry in config["layers"]:
        entry.pop("build_config", None)  # shapes change with the padding
        kind, cfg = entry["class_name"], entry["config"]
        if kind == "BatchNormalization":
            cfg["epsilon"] = TORCH_BN_EPSILON
        elif kind == "ZeroPadding2D":
            cfg["padding"] = [[1, 1], [1, 1]]
        elif entry["name"] == "Conv1":
            source = entry["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0]
            template = entry["inbound_nodes"]
            variance = [(s * 255.0) ** 2 for s in IMAGENET_STD]
            mean = [m * 255.0 for m in IMAGENET_MEAN]
            entries.append(_layer_entry(
                layers.Normalization(mean=mean, variance=variance, name="preprocess"),
                "preprocess", template, source))
            entries.append(_layer_entry(
                layers.ZeroPadding2D(((1, 1), (1, 1)), name="Conv1_pad"),
                "Conv1_pad", template, "preprocess"))
            cfg["padding"] = "valid"
            entry["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["Conv1_pad", 0, 0]
        entries.append(entry)
    config["layers"] = entries
    return config


def _torch_modules(state: dict[str, np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The state dict grouped by module (``features.0.1`` -> its weight, bias, ...), in order."""
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if param != "num_batches_tracked":
            modules.setdefault(module, {})[param] = value
    return list(modules.items())


def _keras_weights(kind: str, params: dict[str, np.ndarray]) -> list[np.ndarray]:
    """torch parameters of one module, in the layout and order of a Keras layer ``kind``."""
    if kind == "Conv2D":  # OIHW -> HWIO
        return [params["weight"].transpose(2, 3, 1, 0)]
    if kind == "DepthwiseConv2D":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [params["weight"].transpose(2, 3, 0, 1)]
    if kind == "BatchNormalization":
        return [params[k] for k in ("weight", "bias", "running_mean", "running_var")]
    if kind == "Dense":  # (out, in) -> (in, out)
        return [params["weight"].T, params["bias"]]
    raise ConversionError(f"no torch mapping for Keras layer kind {kind}")


def load_torchvision_weights(model, state: dict[str, np.ndarray], source: str) -> None:
    """Set ``model``'s weights from a torchvision MobileNetV2 ``state``, layer by layer in order.

    Extra torch modules after the last Keras layer (the classifier, when the model
    has no top) are ignored; any shape or count mismatch raises ConversionError
    naming ``source``.
    """
    targets = [layer for layer in model.layers if layer.weights and layer.name != "preprocess"]
    modules = _torch_modules(state)
    if len(modules) < len(targets):
        raise ConversionError(f"{source}: {len(modules)} torch modules for {len(targets)} Keras layers")
    for layer, (module, params) in zip(targets, modules):
        kind = type(layer).__name__
        try:
            values = _keras_weights(kind, params)
        except KeyError as exc:
            raise ConversionError(f"{source}: {module} lacks {exc} for Keras layer {layer.name}") from exc
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise ConversionError(f"{source}: {module} {[v.shape for v in values]} does not fit "
                                  f"Keras layer {layer.name} {expected}")
        layer.set_weights(values)


def mobilenetv2_imagenet(weights_path, input_size: int = 224, include_top: bool = True,
                         classifier_activation: str | None = "softmax"):
    """Keras MobileNetV2 (alpha 1.0) with torchvision's ImageNet weights from ``weights_path``.

    Input: RGB float32 pixels in [0, 255], shape ``(batch, input_size, input_size, 3)``;
    the model normalises them itself (layer ``preprocess``). With ``include_top`` the
    output is the 1000 ImageNet classes (torchvision's order, the usual ImageNet class
    indices), else the ``(batch, input_size/32, input_size/32, 1280)`` feature map of
    layer ``out_relu``. ``weights_path`` is a ``.pth`` (see :mod:`maskwatch.convert.weights.mobilenet`).
    """
    import keras

    if input_size < 32:
        raise ConversionError(f"input_size must be at least 32, not {input_size}")
    base = keras.applications.MobileNetV2(
        input_shape=(input_size, input_size, 3), alpha=1.0, include_top=include_top,
        weights=None, classifier_activation=classifier_activation)
    model = keras.Model.from_config(_torch_layout_config(base.get_config()))
    load_torchvision_weights(model, load_state_dict(weights_path), str(weights_path))
    return model
