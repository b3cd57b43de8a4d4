"""Quantization-aware fine-tuning (phase 3): the int8 file comes from a copy trained with simulated int8.

Post-training int8 follows the float classifier on nearly every crop, but the crops
it flips are mostly ``mask_weared_incorrect`` ones, whose scores sit near a class
boundary, so that class loses recall in int8 (docs/experiments/classifier.md). Here a
copy of the trained model with fake quantization of weights and activations (from
tensorflow-model-optimization) is fine-tuned for a few epochs and the TFLite int8 file
is converted from it.

What the copy learns (``distil``):

* the float model's probabilities on each augmented batch (self-distillation, the
  default): the int8 file follows the float model, on new sources too. Across data
  sets it scores like the float model; on the five folds it is as close to the float
  model as post-training int8, no closer (docs/experiments/classifier.md).
* the labels: a further fine-tune on class-tempered batches. It leans toward the rare
  class: on the five folds it finds more incorrectly worn masks than the float model,
  but on a source never trained on it calls many more masked or unmasked faces
  incorrectly worn than the float model does (docs/experiments/classifier.md), and
  each of those is an alarm on the device.

tensorflow-model-optimization starts every activation range at -6..6 and moves it by a
moving average with decay 0.999, far too slowly for a fine-tune of a few hundred steps:
:func:`set_activation_ranges` sets them from training batches first.

tensorflow-model-optimization works on ``tf_keras`` (Keras 2), not on Keras 3, so
:func:`tf_keras_twin` rebuilds the trained Keras 3 classifier there, layer by layer
with the same weights. The input normalisation (layer ``preprocess``) stays float;
the converter calibrates it on real crops like any other post-training step.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from maskwatch.edge.errors import ConversionError
from maskwatch.edge.labels import CLASSES
from maskwatch.benchmarks.accuracy.metrics import confusion, per_class

log = logging.getLogger(__name__)

#: Layer kinds :func:`tf_keras_twin` rebuilds, with the config keys each constructor takes.
TWIN_ARGUMENTS = {
    "ZeroPadding2D": ("padding",),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "use_bias"),
    "DepthwiseConv2D": ("kernel_size", "strides", "padding", "use_bias", "depth_multiplier"),
    "BatchNormalization": ("epsilon", "momentum"),
    "ReLU": ("max_value",),
    "Add": (),
    "GlobalAveragePooling2D": (),
    "Dropout": ("rate",),
    "Dense": ("units", "activation"),
}
#: Layers left float (not annotated for fake quantization).
FLOAT_LAYERS = ("InputLayer", "Normalization")


def _twin_layer(layer):
    import tf_keras

    kind, config = type(layer).__name__, layer.get_config()
    if kind == "Normalization":
        return tf_keras.layers.Normalization(mean=np.asarray(layer.mean).reshape(-1),
                                             variance=np.asarray(layer.variance).reshape(-1), name=layer.name)
    if kind not in TWIN_ARGUMENTS:
        raise ConversionError(f"quantization-aware training: no tf_keras twin for layer {layer.name} ({kind})")
    return getattr(tf_keras.layers, kind)(name=layer.name, **{k: config[k] for k in TWIN_ARGUMENTS[kind]})


def tf_keras_twin(model):
    """The functional Keras 3 ``model`` rebuilt in tf_keras with the same layers, names and weights
    (the layer kinds of the MobileNetV2 classifier, :data:`TWIN_ARGUMENTS`)."""
    import tf_keras

    tensors = {}
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            tensors[layer.name] = tf_keras.Input(tuple(layer.output.shape[1:]), name=layer.name)
            continue
        inputs = [tensors[t._keras_history[0].name] for t in layer._inbound_nodes[0].input_tensors]
        twin = _twin_layer(layer)
        tensors[layer.name] = twin(inputs if len(inputs) > 1 else inputs[0])
        if layer.weights:
            twin.set_weights(layer.get_weights())
    return tf_keras.Model([tensors[model.layers[0].name]], tensors[model.layers[-1].name], name=model.name)


def quantization_aware(model):
    """A tf_keras copy of the Keras 3 ``model`` with int8 fake quantization on every layer but the
    input normalisation; BatchNormalization layers are frozen (their statistics stay)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    twin = tf_keras_twin(model)
    for layer in twin.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.trainable = False  # cloned with the flag: statistics stay, as in phase 2
    quantize = tfmot.quantization.keras

    def annotate(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        return fresh if type(layer).__name__ in FLOAT_LAYERS else quantize.quantize_annotate_layer(fresh)

    annotated = tf_keras.models.clone_model(twin, clone_function=annotate)
    annotated.set_weights(twin.get_weights())
    with quantize.quantize_scope():
        return quantize.quantize_apply(annotated)


#: Names of tensorflow-model-optimization's activation-range variables (moving averages of batch
#: min and max); weight ranges (``kernel_min`` ...) are recomputed from the weights at every step.
ACTIVATION_RANGES = ("output_min", "output_max", "pre_activation_min", "pre_activation_max",
                     "post_activation_min", "post_activation_max")
#: The moving-average decay tensorflow-model-optimization's MovingAverageQuantizer uses (fixed there).
RANGE_DECAY = 0.999


def set_activation_ranges(aware, batches) -> int:
    """Set every activation range of the quantization-aware ``aware`` from ``batches`` (images):
    the mean over the batches of each range's batch minimum and maximum, the value
    tensorflow-model-optimization's moving average tends to. Returns the number of batches averaged.

    tensorflow-model-optimization starts each range at -6..6 and moves it toward the batch's by a
    moving average with decay 0.999, so a short fine-tune would quantize, say, a ReLU6 output on
    -4.6..6 instead of 0..6: 1.8 times coarser than post-training calibration. Each forward pass in
    training mode moves every range by ``0.001 * (batch value - range)``, so the batch value is
    read back from the move. The first batch, seen through the -6..6 ranges, only brings the ranges
    near; the mean is over the batches after it."""
    ranges = [v for v in aware.variables if v.name.split("/")[-1].split(":")[0] in ACTIVATION_RANGES]
    if not ranges:
        raise ConversionError("quantization-aware training: the model has no activation ranges to set")
    lowers = [v.name.split(":")[0].endswith("_min") for v in ranges]

    def seen(x) -> list[np.ndarray]:  # each range's batch value, read back from its moving-average step
        before = [v.numpy().astype(np.float64) for v in ranges]
        aware(x, training=True)
        return [b + (v.numpy() - b) / (1 - RANGE_DECAY) for v, b in zip(ranges, before)]

    def assign(values):  # a range always holds 0, as tensorflow-model-optimization's do
        for v, value, lower in zip(ranges, values, lowers):
            v.assign((np.minimum(value, 0.0) if lower else np.maximum(value, 0.0)).astype(v.dtype.as_numpy_dtype))

    batches = iter(batches)
    first = next(batches, None)
    if first is not None:
        assign(seen(first))
    totals, count = [np.zeros(v.shape, np.float64) for v in ranges], 0
    for x in batches:
        totals = [t + value for t, value in zip(totals, seen(x))]
        count += 1
        assign([t / count for t in totals])
    if count < 1:
        raise ConversionError("quantization-aware training: setting activation ranges needs at least two batches")
    return count


def fine_tune(model, data, x_val: np.ndarray, y_val: np.ndarray, epochs: int, steps: int, lr: float,
              history: list | None = None, distil: bool = True):
    """Quantization-aware copy of ``model``, its activation ranges set from ``steps // 4`` batches
    of ``data`` (a tf.data set of augmented ``(image, label)`` batches), then fine-tuned for up to
    ``epochs`` of ``steps`` batches.

    With ``distil`` (the default) the copy learns the float ``model``'s own probabilities on each
    batch (self-distillation) and the kept state (before fine-tuning or after an epoch) is the one
    whose simulated int8 agrees best with the float model on the val crops, ties going to the one
    whose probabilities are closest to the float model's (mean absolute difference): the int8 file
    follows the float classifier instead of drifting from it. Without, it learns the labels and the
    kept state is the one with the best val macro F1."""
    import tf_keras

    aware = quantization_aware(model)
    set_activation_ranges(aware, (x for x, _ in data.take(max(2, steps // 4))))
    if distil:
        teacher = tf_keras_twin(model)
        teacher.trainable = False
        reference_probs = teacher.predict(x_val, batch_size=256, verbose=0)
        reference = reference_probs.argmax(1)
        data = data.map(lambda x, y: (x, teacher(x, training=False)))
    aware.compile(tf_keras.optimizers.Adam(lr), "categorical_crossentropy" if distil else "sparse_categorical_crossentropy")
    best, best_weights = None, None
    for epoch in range(epochs + 1):
        started, loss = time.perf_counter(), None
        if epoch:
            loss = float(aware.fit(data, steps_per_epoch=steps, epochs=1, verbose=0).history["loss"][-1])
        probs = aware.predict(x_val, batch_size=256, verbose=0)
        predicted = probs.argmax(1)
        macro_f1 = per_class(confusion(y_val, predicted, len(CLASSES)), CLASSES)["macro_f1"]
        agreement = float((predicted == reference).mean()) if distil else None
        difference = float(np.abs(probs - reference_probs).mean()) if distil else None
        score = agreement if distil else macro_f1
        seconds = round(time.perf_counter() - started, 1)
        log.info("quantization-aware epoch %d: %sval macro F1 %.4f%s (%.0f s)", epoch,
                 "" if loss is None else f"loss {loss:.4f}, ", macro_f1,
                 "" if agreement is None else f", same class as the float model {agreement:.4f} "
                 f"(probabilities {difference:.4f} apart)", seconds)
        if history is not None:
            history.append({"phase": "quantization-aware", "epoch": epoch, "loss": loss, "val_macro_f1": macro_f1,
                            "agreement": agreement, "probability_difference": difference, "score": score, "seconds": seconds,
                            "target": "float model" if distil else "labels"})
        key = (score, -difference) if distil else (score,)
        if best is None or key > best:
            best, best_weights = key, aware.get_weights()
    aware.set_weights(best_weights)
    return aware
