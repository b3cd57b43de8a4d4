"""The seed paper's float TensorFlow pipeline, measured beside the converted one in the same run.

RetinaFace runs as the unconverted frozen graph (decoding and NMS inside
TensorFlow), the classifier as its float Keras model, every face classified on
every frame (no tracking). Same frame, same letterbox, same thresholds as the
converted pipeline; needs ``maskwatch[convert]``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maskwatch.edge.image import crop_with_margin, letterbox, stretch
from maskwatch.edge.manifest import Manifest, default_models_dir
from maskwatch.edge.postprocess import PostprocessSettings

FULL_OUTPUT = "Identity:0"  #: (N, 16): 14 normalised coordinates (box, 5 landmarks), a flag, the score
KERAS_CLASSIFIER = "mask_mnv2_96_fp32.keras"
#: Workstation-only models (a device never has them) sit in this folder of the models folder, with their
#: own manifest, so that a device's doctor reports only what a device can have.
WORKSTATION_MODELS = "workstation"


class TensorFlowPipeline:
    """Detector and classifier in float TensorFlow; ``process(frame)`` returns (boxes, labels)."""

    def __init__(self, input_size: int = 320, score_threshold: float = PostprocessSettings.score_threshold,
                 models_dir=None):
        import cv2
        import keras
        import tensorflow as tf

        from maskwatch.convert.weights.retinaface import graph_bytes

        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(graph_bytes()[0])
        wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        self._graph = wrapped.prune(wrapped.graph.as_graph_element("x:0"), wrapped.graph.as_graph_element(FULL_OUTPUT))
        workstation = Path(models_dir or default_models_dir()) / WORKSTATION_MODELS
        path, entry = Manifest.load(workstation).resolve(KERAS_CLASSIFIER)
        self._classifier = keras.models.load_model(path, compile=False)
        self.labels, self.margin, self.crop_size = entry.labels, entry.preprocessing["margin"], entry.input.shape[1]
        self.input_size, self.score_threshold, self._cv2, self._tf = input_size, score_threshold, cv2, tf

    def detect(self, frame_bgr: np.ndarray):
        image, box = letterbox(frame_bgr, self.input_size, self.input_size)
        rows = self._graph(self._tf.constant(image[None].astype(np.float32))).numpy()
        rows = rows[rows[:, 15] >= self.score_threshold]
        boxes = box.to_frame(rows[:, :4] * self.input_size)
        return boxes, rows[:, 15]

    def classify(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if not len(boxes):
            return np.zeros((0, len(self.labels)), np.float32)
        size = self.crop_size
        crops = [stretch(self._cv2.cvtColor(crop_with_margin(frame_bgr, b, self.margin), self._cv2.COLOR_BGR2RGB), size, size)
                 for b in boxes]
        return self._classifier(np.stack(crops).astype(np.float32), training=False).numpy()

    def process(self, frame_bgr: np.ndarray):
        boxes, scores = self.detect(frame_bgr)
        probabilities = self.classify(frame_bgr, boxes)
        return boxes, scores, probabilities


def compare(document: dict, config, voc=None) -> dict:
    """Baseline frame latency on the five-face frame, its ratio to each variant, and (with ``voc``) mAP of both."""
    from maskwatch.benchmarks.speed.bench import five_face_frame, timed

    baseline = TensorFlowPipeline(input_size=320)
    frame = five_face_frame()
    frame_time = timed(lambda: baseline.process(frame), config)
    ratios = {r["variant"]: round(frame_time["median_ms"] / r["stages"]["frame"]["median_ms"], 2)
              for r in document["results"] if "error" not in r}
    result = {"pipeline": "RetinaFace frozen graph (float TensorFlow) + Keras float classifier, every face every frame",
              "frame": frame_time, "speed_ratio": ratios, "faces_in_frame": int(len(baseline.detect(frame)[0]))}
    if voc is not None:
        result["accuracy"] = accuracy(baseline, document, voc)
    return result


def accuracy(baseline: TensorFlowPipeline, document: dict, voc) -> dict:
    """mAP of the baseline and of each benchmarked variant on the val split of ``voc``, and the differences."""
    from maskwatch.edge.classifier import ClassifierConfig, MaskClassifier
    from maskwatch.edge.detector import DetectorConfig, FaceDetector
    from maskwatch.benchmarks.accuracy.evaluate import EVAL_THRESHOLD, predictor_process, scene_figures
    from maskwatch.edge.face_reader import FaceReader
    from maskwatch.edge.predict import ImagePredictor
    from maskwatch.edge.tiling import TilingConfig
    from maskwatch.benchmarks.variants import VARIANTS

    def process(image):
        boxes, scores, probabilities = baseline.process(image)
        best = probabilities.argmax(1) if len(probabilities) else np.zeros(0, int)
        return boxes, scores * probabilities.max(1, initial=0), [baseline.labels[i] for i in best]

    baseline.score_threshold = EVAL_THRESHOLD
    figures = {"baseline": scene_figures(process, voc)["all"]}
    for r in document["results"]:
        if "error" in r:
            continue
        detector_file, classifier_file, size = VARIANTS[r["variant"]]
        detector = FaceDetector.from_config(DetectorConfig(model=detector_file, input_size=size,
                                                           score_threshold=EVAL_THRESHOLD))
        classifier = MaskClassifier.from_config(ClassifierConfig(model=classifier_file))
        predictor = ImagePredictor(FaceReader(detector, classifier, tiling=TilingConfig(mode="off")))  # as the baseline
        figures[r["variant"]] = scene_figures(predictor_process(predictor), voc)["all"]
    keep = ("map_3class", "map_2class", "face_ap")
    summary = {name: {k: f[k] for k in keep} for name, f in figures.items()}
    for name in summary:
        if name != "baseline":
            summary[name]["map_3class_minus_baseline"] = round(summary[name]["map_3class"] - summary["baseline"]["map_3class"], 4)
    return summary
