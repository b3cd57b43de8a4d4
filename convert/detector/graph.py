"""Cutting the RetinaFace frozen graph at its nine per-level heads.

The frozen graph ends in decoding and NMS, which quantize badly and tie the
model to TensorFlow ops; we keep only the network up to
``RetinaFaceModel/{Bbox,Landmark,Class}Head_{0,1,2}/Reshape:0`` and do the rest
in numpy (:mod:`maskwatch.edge.postprocess`).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from maskwatch.edge.errors import ConversionError
from maskwatch.edge.postprocess import AnchorConfig

INPUT_TENSOR = "x:0"
INPUT_NAME = "image"
_KINDS = (("bbox", "Bbox"), ("landmark", "Landmark"), ("class", "Class"))
STEPS = AnchorConfig().steps
#: Our output names (bbox_8 … class_32), in manifest order, and the graph tensors they come from.
HEADS = {f"{ours}_{step}": f"RetinaFaceModel/{theirs}Head_{level}/Reshape:0"
         for ours, theirs in _KINDS for level, step in enumerate(STEPS)}
OUTPUT_NAMES = list(HEADS)
PREPROCESSING = {
    "color": "RGB",
    "resize": "letterbox: scale to fit keeping aspect ratio, top-left, pad bottom/right with 0",
    "input_range": "0..255 pixels; the network computes x/127.5-1 itself",
}


def parse_graph_def(data: bytes) -> tf.compat.v1.GraphDef:
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise ConversionError(f"the frozen graph does not parse ({exc})") from None
    names = {node.name for node in graph_def.node}
    missing = [t for t in [INPUT_TENSOR, *HEADS.values()] if t.split(":")[0] not in names]
    if missing:
        raise ConversionError(f"the frozen graph lacks {', '.join(missing[:3])}: not the RetinaFace graph")
    return graph_def


class HeadsModel(tf.Module):
    """The cut network as a TensorFlow function: image (N,H,W,3) float 0..255 -> dict of heads."""

    output_names = OUTPUT_NAMES

    def __init__(self, graph_def: tf.compat.v1.GraphDef):
        super().__init__()
        self._graph_def = graph_def
        wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        graph = wrapped.graph
        self._pruned = wrapped.prune(graph.as_graph_element(INPUT_TENSOR),
                                     [graph.as_graph_element(t) for t in HEADS.values()])

    def __call__(self, image) -> dict:
        return dict(zip(OUTPUT_NAMES, self._pruned(tf.cast(image, tf.float32))))

    def numpy(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self(tf.constant(image)).items()}

    def concrete(self, height: int, width: int):
        """A concrete function with a fixed (1, height, width, 3) float input named ``image``."""
        spec = tf.TensorSpec([1, height, width, 3], tf.float32, name=INPUT_NAME)
        return tf.function(lambda image: self(image), input_signature=[spec]).get_concrete_function()

    def onnx(self, opset: int, height: int | None = None, width: int | None = None):
        """The cut network as ONNX with dynamic batch, height and width (sizes ignored)."""
        import tf2onnx

        proto, _ = tf2onnx.convert.from_graph_def(
            heads_graph_def(self._graph_def), input_names=[f"{INPUT_NAME}:0"],
            output_names=[f"{n}:0" for n in OUTPUT_NAMES], opset=opset)
        return proto


def heads_graph_def(graph_def: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """A graph holding only the network, input ``image`` and outputs named as ours."""
    sub = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [t.split(":")[0] for t in HEADS.values()])
    with tf.Graph().as_default() as graph:
        image = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name=INPUT_NAME)
        heads = tf.compat.v1.import_graph_def(sub, input_map={INPUT_TENSOR: image},
                                              return_elements=list(HEADS.values()), name="")
        for name, tensor in zip(OUTPUT_NAMES, heads):
            tf.identity(tensor, name=name)
    return graph.as_graph_def()
