"""A Keras classifier (Keras 3, or tf_keras after quantization-aware training) as an exportable network."""
from __future__ import annotations

import tensorflow as tf


class KerasNetwork(tf.Module):
    """Wraps a Keras model taking RGB float 0..255 and returning class probabilities."""

    output_names = ["probabilities"]

    def __init__(self, model):
        super().__init__()
        self.model = model
        import keras

        # Keras 3 variables are not tf.Module-tracked; list their tf.Variables so converters can freeze them.
        self.tf_variables = [v.value if isinstance(v, keras.Variable) else v for v in model.weights]

    def _call(self, image):
        return {"probabilities": self.model(image, training=False)}

    def concrete(self, height: int, width: int):
        spec = tf.TensorSpec([1, height, width, 3], tf.float32, name="image")
        return tf.function(self._call, input_signature=[spec]).get_concrete_function()

    def onnx(self, opset: int, height: int, width: int):
        """ONNX with a dynamic batch (a frame's faces in one call) and a fixed crop size."""
        import tf2onnx
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="image")
        frozen = convert_variables_to_constants_v2(tf.function(self._call, input_signature=[spec]).get_concrete_function())
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs], opset=opset)
        return proto
