"""RetinaFace (MobileNetV2) rebuilt as a trainable Keras model, with an optional mask head.

The network is the one inside the ``retinaface==1.1.1`` frozen graph (a port of
peteryuX/retinaface-tf2): Keras's MobileNetV2 cut at ``block_5_add``, ``block_12_add`` and
``block_15_add`` (strides 8, 16, 32), an FPN of 64 channels (1x1 lateral ConvBN, nearest
upsampling, 3x3 merge ConvBN, leaky ReLU 0.1), one SSH module per level, and per level 1x1
box, landmark and class heads with two anchors a cell. :func:`load_graph_weights` copies every
weight from the graph's Consts by name, so the rebuilt model computes the graph's nine heads
(the parity test checks it).

The mask head (``mask=True``) adds, beside each level's face/background head, a 1x1
convolution giving three logits per anchor over :data:`MASK_LABELS`; it is trained only on
anchors matched to a face (:mod:`maskwatch.convert.detector.train`).

Layer names are the graph's scopes with ``/`` written as ``.`` (Keras forbids ``/``); the
backbone keeps Keras's own MobileNetV2 names, which are the graph's too.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from maskwatch.edge.errors import ConversionError
from maskwatch.edge.labels import CLASSES

from maskwatch.convert.detector.graph import HEADS, OUTPUT_NAMES, STEPS

#: Labels of the mask head, in its output order (the classifier's order).
MASK_LABELS = CLASSES
#: Output names of the mask head, one per level, after the nine face heads.
MASK_OUTPUT_NAMES = [f"mask_{step}" for step in STEPS]
ANCHORS_PER_CELL = 2
FPN_CHANNELS = 64
_CONVBN_EPSILON = 1.001e-5
_PICKS = ("block_5_add", "block_12_add", "block_15_add")
_GRAPH_ROOT = "RetinaFaceModel"
_BACKBONE_SCOPE = "MobileNetV2_extrator"


def _conv_bn(x, filters: int, kernel: int, scope: str, act: str | None):
    import keras

    x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{scope}.conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_CONVBN_EPSILON, name=f"{scope}.bn")(x)
    if act == "lrelu":
        x = keras.layers.LeakyReLU(negative_slope=0.1, name=f"{scope}.act")(x)
    return x


def _ssh(x, level: int):
    import keras

    scope = f"SSH_{level}"
    c3 = _conv_bn(x, FPN_CHANNELS // 2, 3, f"{scope}.ConvBN", None)
    c5_1 = _conv_bn(x, FPN_CHANNELS // 4, 3, f"{scope}.ConvBN_1", "lrelu")
    c5 = _conv_bn(c5_1, FPN_CHANNELS // 4, 3, f"{scope}.ConvBN_2", None)
    c7_2 = _conv_bn(c5_1, FPN_CHANNELS // 4, 3, f"{scope}.ConvBN_3", "lrelu")
    c7 = _conv_bn(c7_2, FPN_CHANNELS // 4, 3, f"{scope}.ConvBN_4", None)
    x = keras.layers.Concatenate(axis=3, name=f"{scope}.concat")([c3, c5, c7])
    return keras.layers.ReLU(name=f"{scope}.relu")(x)


def _head(x, scope: str, per_anchor: int, name: str):
    import keras

    x = keras.layers.Conv2D(ANCHORS_PER_CELL * per_anchor, 1, name=f"{scope}.conv")(x)
    return keras.layers.Reshape((-1, per_anchor), name=name)(x)


def build(mask: bool = False, height: int | None = None, width: int | None = None):
    """The Keras model: RGB float 0..255 (N, H, W, 3), H and W multiples of 32, to a dict of heads.

    Outputs, keyed as the manifest names them: ``bbox_8`` … ``class_32`` (the graph's nine
    heads: box deltas (N, A, 4), landmark deltas (N, A, 10), face logits (N, A, 2)) and, with
    ``mask``, ``mask_8`` … ``mask_32`` (mask-state logits (N, A, 3)). Weights are random until
    :func:`load_graph_weights`.
    """
    import keras

    image = keras.Input((height, width, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(image)
    backbone = keras.applications.MobileNetV2(input_shape=(height, width, 3), include_top=False, weights=None)
    extractor = keras.Model(backbone.input, [backbone.get_layer(n).output for n in _PICKS], name=_BACKBONE_SCOPE)
    c8, c16, c32 = extractor(x)
    o8 = _conv_bn(c8, FPN_CHANNELS, 1, "FPN.ConvBN", "lrelu")
    o16 = _conv_bn(c16, FPN_CHANNELS, 1, "FPN.ConvBN_1", "lrelu")
    o32 = _conv_bn(c32, FPN_CHANNELS, 1, "FPN.ConvBN_2", "lrelu")
    up32 = keras.layers.UpSampling2D(2, interpolation="nearest", name="FPN.up_32")(o32)
    o16 = _conv_bn(keras.layers.Add(name="FPN.add")([o16, up32]), FPN_CHANNELS, 3, "FPN.ConvBN_3", "lrelu")
    up16 = keras.layers.UpSampling2D(2, interpolation="nearest", name="FPN.up_16")(o16)
    o8 = _conv_bn(keras.layers.Add(name="FPN.add_1")([o8, up16]), FPN_CHANNELS, 3, "FPN.ConvBN_4", "lrelu")
    features = [_ssh(f, level) for level, f in enumerate((o8, o16, o32))]
    outputs = {}
    for kind, scope, per_anchor in (("bbox", "BboxHead", 4), ("landmark", "LandmarkHead", 10), ("class", "ClassHead", 2)):
        for level, (step, f) in enumerate(zip(STEPS, features)):
            outputs[f"{kind}_{step}"] = _head(f, f"{scope}_{level}", per_anchor, f"{kind}_{step}")
    if mask:
        for level, (step, f) in enumerate(zip(STEPS, features)):
            outputs[f"mask_{step}"] = _head(f, f"MaskHead_{level}", len(MASK_LABELS), f"mask_{step}")
    return keras.Model(image, outputs, name="retinaface_mnv2" + ("_mask" if mask else ""))


def has_mask_head(model) -> bool:
    return all(name in model.output for name in MASK_OUTPUT_NAMES) if isinstance(model.output, dict) else False


def _graph_weights(graph_def) -> dict[str, list[np.ndarray]]:
    """Each weighted op of the graph (scope under RetinaFaceModel/, ``/`` as ``.``) -> its weights.

    Conv2D and depthwise kernels, BiasAdd biases, and FusedBatchNormV3's scale, offset, mean and
    variance, in Keras's weight order.
    """
    from tensorflow.python.framework import tensor_util

    nodes = {n.name: n for n in graph_def.node}

    def const(name: str) -> np.ndarray:
        node = nodes[name.split(":")[0]]
        while node.op == "Identity":
            node = nodes[node.input[0].split(":")[0]]
        if node.op != "Const":
            raise ConversionError(f"the frozen graph's {name} is not a constant ({node.op})")
        return tensor_util.MakeNdarray(node.attr["value"].tensor)

    weights: dict[str, list[np.ndarray]] = {}
    for node in graph_def.node:
        if not node.name.startswith(_GRAPH_ROOT + "/"):
            continue
        scope = node.name[len(_GRAPH_ROOT) + 1:].rsplit("/", 1)[0]
        if node.op in ("Conv2D", "DepthwiseConv2dNative"):
            weights.setdefault(scope, []).insert(0, const(node.input[1]))
        elif node.op == "BiasAdd":
            weights.setdefault(scope, []).append(const(node.input[1]))
        elif node.op == "FusedBatchNormV3":
            weights[scope] = [const(i) for i in node.input[1:5]]
    return weights


def _layer_scope(layer_name: str, graph_scopes) -> str | None:
    """The graph scope whose weights a Keras layer takes."""
    if layer_name.startswith(("FPN.", "SSH_", "BboxHead_", "LandmarkHead_", "ClassHead_")):
        prefix = layer_name.replace(".", "/")
        if prefix.endswith("/conv") and prefix.split("/")[0].endswith(tuple(f"Head_{i}" for i in range(3))):
            head = prefix.split("/")[0]   # a head's conv is named conv2d, conv2d_3, … in the graph
            found = [s for s in graph_scopes if s.startswith(head + "/conv2d")]
            return found[0] if len(found) == 1 else None
        return prefix
    return f"{_BACKBONE_SCOPE}/{layer_name}"


def load_graph_weights(model, graph_def) -> int:
    """Copy the frozen graph's weights into ``model`` (from :func:`build`) by name; the count copied.

    Every weighted layer of the face detector must find its weights, with the same shapes, or a
    ConversionError names the first that does not; the mask head (not in the graph) keeps its
    initial weights.
    """
    graph = _graph_weights(graph_def)
    copied = 0
    layers = [(layer, None) for layer in model.layers if layer.name != _BACKBONE_SCOPE]
    layers += [(layer, _BACKBONE_SCOPE) for layer in model.get_layer(_BACKBONE_SCOPE).layers]
    for layer, _ in layers:
        if not layer.weights or layer.name.startswith("MaskHead_"):
            continue
        scope = _layer_scope(layer.name, graph)
        if scope not in graph:
            raise ConversionError(f"the frozen graph has no weights for layer {layer.name} ({scope})")
        values = graph[scope]
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [v.shape for v in values]:
            raise ConversionError(f"layer {layer.name}: shapes {shapes} differ from the graph's "
                                  f"{[v.shape for v in values]} ({scope})")
        layer.set_weights(values)
        copied += 1
    return copied


def from_graph(graph_def, mask: bool = False, height: int | None = None, width: int | None = None):
    """:func:`build` with the frozen graph's weights loaded."""
    model = build(mask=mask, height=height, width=width)
    load_graph_weights(model, graph_def)
    return model


def rescale_to_anchors(model, old, new) -> None:
    """Re-express the box and landmark heads of ``model`` against anchors ``new`` instead of ``old``
    (:class:`maskwatch.edge.postprocess.AnchorConfig`, same steps and count per cell), so that it
    decodes to the same boxes and landmarks as before.

    Decoding scales centre and landmark offsets by the anchor's size and multiplies the box's size
    by it: for an anchor changed from size ``s`` to ``t``, offsets are scaled by ``s / t`` (kernel
    and bias of those channels) and ``log(s / t) / variance`` is added to the size biases.
    """
    if tuple(old.steps) != tuple(new.steps) or [len(s) for s in old.min_sizes] != [len(s) for s in new.min_sizes]:
        raise ConversionError(f"anchors {new.to_dict()} differ from {old.to_dict()} in steps or anchors per cell")
    size_variance = new.variances[1]
    for level, (before, after) in enumerate(zip(old.min_sizes, new.min_sizes)):
        # per anchor: its channels, of which the first ``offsets`` scale with the anchor's size
        for scope, channels, offsets in (("BboxHead", 4, 2), ("LandmarkHead", 10, 10)):
            layer = model.get_layer(f"{scope}_{level}.conv")
            kernel, bias = (np.array(w) for w in layer.get_weights())
            for anchor, (s, t) in enumerate(zip(before, after)):
                if s == t:
                    continue
                first = anchor * channels
                kernel[..., first:first + offsets] *= s / t
                bias[first:first + offsets] *= s / t
                bias[first + offsets:first + channels] += np.log(s / t) / size_variance  # box sizes only
            layer.set_weights([kernel, bias])


class KerasHeadsNetwork(tf.Module):
    """A Keras RetinaFace as an exportable network for :mod:`maskwatch.convert.export.formats`.

    Outputs, in order: the nine face heads (:data:`OUTPUT_NAMES`), then the mask head's three when
    the model has one.
    """

    def __init__(self, model):
        super().__init__()
        import keras

        self.model = model
        self._mask = has_mask_head(model)
        # Keras 3 variables are not tf.Module-tracked; list their tf.Variables so converters can freeze them.
        self.tf_variables = [v.value if isinstance(v, keras.Variable) else v for v in model.weights]

    @property
    def output_names(self) -> list[str]:  # a property: tf.Module would wrap a list attribute
        return OUTPUT_NAMES + (MASK_OUTPUT_NAMES if self._mask else [])

    def __call__(self, image) -> dict:
        out = self.model(tf.cast(image, tf.float32), training=False)
        return {name: out[name] for name in self.output_names}

    def numpy(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self(tf.constant(image)).items()}

    def concrete(self, height: int, width: int):
        spec = tf.TensorSpec([1, height, width, 3], tf.float32, name="image")
        return tf.function(self.__call__, input_signature=[spec]).get_concrete_function()

    def onnx(self, opset: int, height: int | None = None, width: int | None = None):
        """ONNX with dynamic batch, height and width (sizes ignored)."""
        import tf2onnx
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="image")
        in_order = lambda image: [self(image)[name] for name in self.output_names]  # a dict would flatten sorted
        frozen = convert_variables_to_constants_v2(tf.function(in_order, input_signature=[spec]).get_concrete_function())
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs], opset=opset)
        return proto


__all__ = ["HEADS", "MASK_LABELS", "MASK_OUTPUT_NAMES", "KerasHeadsNetwork", "build", "from_graph",
           "has_mask_head", "load_graph_weights", "rescale_to_anchors"]
