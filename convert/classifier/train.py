"""``maskwatch convert train-classifier``: a three-class mask classifier from real face crops.

Recipe (seeded, repeatable): face crops from PASCAL VOC scenes and crop
folders, split by source image (:mod:`maskwatch.benchmarks.accuracy.splits`); street-like augmentation
(:mod:`maskwatch.convert.data.augment`); class-tempered sampling for the rare
``mask_weared_incorrect`` class, optionally topped up with synthesized
examples; phase 1 trains the head on a frozen ImageNet backbone, phase 2 the
top of the backbone; both stop early on validation macro F1 and keep the best
weights. Each data set's val macro F1 is logged too. Phase 3 fine-tunes a copy
with simulated int8 (:mod:`maskwatch.convert.classifier.qat`), which the TFLite int8 file comes from.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from maskwatch.edge.errors import ConfigError, InputError
from maskwatch.edge.labels import CLASSES
from maskwatch.benchmarks.accuracy.metrics import confusion, per_class
from maskwatch.benchmarks.accuracy.splits import FOLDS

from maskwatch.convert.data.augment import augment
from maskwatch.convert.data.faces import (FaceReport, FaceSample, align_crop_folder_faces, crop_batch, load_crop_folders,
                                          load_voc_detector_faces, load_voc_faces)

log = logging.getLogger(__name__)
BACKBONES = ("mobilenetv2", "xception")
#: The detector whose boxes cut the VOC crops with ``voc_boxes = "detector"``.
DETECTOR_FOR_CROPS = "retinaface_mnv2_640_int8.tflite"
#: First layer trained in phase 2, per backbone: the top blocks only.
FINETUNE_FROM = {"mobilenetv2": "block_8_expand", "xception": "block13_sepconv1"}
#: Epochs of phase 3 (quantization-aware, :mod:`maskwatch.convert.classifier.qat`) per backbone that has it. Not xception:
#: tensorflow-model-optimization 0.8 stalls (minutes, no end) preparing its separable convolutions.
QAT_EPOCHS = {"mobilenetv2": 2}
#: What phase 3 can learn: the float model's probabilities (self-distillation) or the labels.
QAT_TARGETS = ("float", "labels")


@dataclass
class TrainConfig:
    voc: list[Path] = field(default_factory=list)
    crops: list[Path] = field(default_factory=list)
    #: VOC crops cut from the ``annotated`` boxes, or from the matching ``detector`` boxes (as the runtime cuts them)
    voc_boxes: str = "detector"
    backbone: str = "mobilenetv2"
    weights: Path | None = None  #: ImageNet weights (.pth for mobilenetv2; Keras .h5 for xception)
    input_size: int = 96
    #: the crop's context: a share of the box's width and height (box crops) or of the aligned template's side
    margin: float = 0.2
    #: faces turned upright on the detector's five landmarks (maskwatch.edge.align.aligned_face) instead of box crops
    aligned: bool = False
    min_face: int = 8
    #: synthesized mask_weared_incorrect crops added to training (None: auto, see :func:`synth_count`)
    synth_incorrect: int | None = None
    batch: int = 64
    steps_per_epoch: int = 120
    head_epochs: int = 3
    finetune_epochs: int = 15
    #: first backbone layer trained in phase 2 (None: FINETUNE_FROM, the top blocks)
    finetune_from: str | None = None
    patience: int = 4
    head_lr: float = 1e-3
    finetune_lr: float = 1e-4
    sampling_power: float = 0.5  #: class sampling weight ~ count**power (1: natural, 0: balanced)
    #: share of a class's draws given to its synthesized crops (None: in proportion to their number)
    synthetic_share: float | None = None
    #: within a class, each data set's draws ~ its count**power (1: in proportion, 0: data sets equal)
    source_power: float = 1.0
    seed: int = 0
    #: the fold held out for validation (maskwatch.benchmarks.accuracy.splits.fold_of); 0 is the project's val split, 1-4 cross-validate
    val_fold: int = 0
    limit: int | None = None  #: cap per class and split (for quick runs and tests)
    #: phase 3: epochs of quantization-aware fine-tuning for the int8 file (0: post-training int8 only;
    #: None: QAT_EPOCHS, the backbone's default)
    qat_epochs: int | None = None
    qat_lr: float = 1e-5
    #: what phase 3 learns: "float" (the float model's probabilities, so the int8 file follows it)
    #: or "labels"
    qat_target: str = "float"


def load_samples(config: TrainConfig) -> tuple[list[FaceSample], FaceReport]:
    if not config.voc and not config.crops:
        raise ConfigError("train-classifier needs at least one --voc or --crops folder")
    size = int(round(config.input_size * 1.25))  # room for crop jitter
    samples, report = [], FaceReport()
    if config.voc_boxes not in ("annotated", "detector"):
        raise ConfigError(f"--voc-boxes {config.voc_boxes!r}: choose annotated or detector")
    if not 0 <= config.val_fold < FOLDS:
        raise ConfigError(f"--val-fold {config.val_fold}: choose a fold from 0 to {FOLDS - 1}")
    if qat_epochs(config) < 0:
        raise ConfigError(f"--qat-epochs {config.qat_epochs}: give 0 (off) or more")
    if qat_epochs(config) and config.backbone not in QAT_EPOCHS:
        raise ConfigError(f"--qat-epochs {config.qat_epochs}: quantization-aware training is for {', '.join(QAT_EPOCHS)} only; "
                          f"give 0 for {config.backbone}")
    if config.qat_target not in QAT_TARGETS:
        raise ConfigError(f"--qat-target {config.qat_target!r}: choose {' or '.join(QAT_TARGETS)}")
    if config.finetune_from is not None:  # a typo fails here, not after the crops are cut and the head trained
        finetune_start(config, build_model(config)[1])
    if config.aligned and config.voc and config.voc_boxes != "detector":
        raise ConfigError("--align landmarks cuts faces on the detector's landmarks: it needs --voc-boxes detector")
    detector = None
    if (config.voc and config.voc_boxes == "detector") or (config.crops and config.aligned):
        from maskwatch.edge.detector import DetectorConfig, FaceDetector

        detector = FaceDetector.from_config(DetectorConfig(model=DETECTOR_FOR_CROPS, score_threshold=0.3))
    for root in config.voc:
        if config.voc_boxes == "detector":
            found, rep = load_voc_detector_faces(root, detector, margin=config.margin, size=size, val_fold=config.val_fold,
                                                 aligned=config.aligned)
        else:
            found, rep = load_voc_faces(root, margin=config.margin, min_face=config.min_face, size=size, strict=False,
                                        val_fold=config.val_fold)
        samples += found
        report = report.merge(rep)
    whole = []  # crop-folder photos at their own size, aligned once the limit has picked them
    for root in config.crops:
        found, rep = load_crop_folders(root, size=None if config.aligned else size, val_fold=config.val_fold)
        (whole if config.aligned else samples).extend(found)
        report = report.merge(rep)
    samples += whole
    if config.limit:
        rng = np.random.default_rng(config.seed)
        kept = []
        for split in ("train", "val"):
            for label in CLASSES:
                group = [s for s in samples if s.split == split and s.label == label]
                order = rng.permutation(len(group))[: config.limit]
                kept += [group[i] for i in sorted(order)]
        samples = kept
    if whole:
        picked = {id(s) for s in whole}
        chosen = [s for s in samples if id(s) in picked]
        photos, aligned = align_crop_folder_faces(chosen, detector, margin=config.margin, size=size)
        log.info("crop folders: %d of %d faces aligned on their landmarks (the rest kept whole: no face found)",
                 aligned, len(photos))
        by_id = {id(s): p for s, p in zip(chosen, photos)}
        samples = [by_id.get(id(s), s) for s in samples]
    for split in ("train", "val"):
        if not any(s.split == split for s in samples):
            raise InputError(f"no face crops on the {split} side of the split in {config.voc + config.crops}")
    return samples, report


#: Most unmasked / masked train faces searched for landmarks when synthesizing (landmarks cost ~40 ms each).
SYNTH_POOL = 1500
#: Synthesized incorrect masks when the train side has no real one (``--synth-incorrect auto``).
SYNTH_WITHOUT_REAL = 600


def synth_count(samples: list[FaceSample], config: TrainConfig) -> int:
    """How many incorrect masks to synthesize: ``config.synth_incorrect``, or when it is None (auto)
    none if the train side has real incorrectly worn faces, else :data:`SYNTH_WITHOUT_REAL`.

    Measured on five folds (docs/experiments/classifier.md): beside the real ones, synthesized
    masks lowered both recall and precision on real incorrectly worn faces; with no real one they
    are the only way the model learns the class at all.
    """
    if config.synth_incorrect is not None:
        return max(0, config.synth_incorrect)
    real = any(s.split == "train" and s.label == "mask_weared_incorrect" and not s.synthetic for s in samples)
    return 0 if real else SYNTH_WITHOUT_REAL


def add_synthetic_incorrect(samples: list[FaceSample], config: TrainConfig) -> list[FaceSample]:
    """Samples plus :func:`synth_count` synthesized incorrect-mask crops, from the train side only."""
    count = synth_count(samples, config)
    if count == 0:
        return samples
    from maskwatch.convert.data.synth_masks import synthesize_incorrect

    rng = np.random.default_rng(config.seed)
    pool = lambda label: [s for s in samples if s.split == "train" and s.label == label and not s.synthetic]
    unmasked, masked = pool("without_mask"), pool("with_mask")
    unmasked = [unmasked[i] for i in sorted(rng.permutation(len(unmasked))[:SYNTH_POOL])]
    masked = [masked[i] for i in sorted(rng.permutation(len(masked))[:SYNTH_POOL])]
    started = time.perf_counter()
    made = synthesize_incorrect(unmasked, masked, count, rng)
    log.info("synthesized %d mask_weared_incorrect crops in %.0f s", len(made), time.perf_counter() - started)
    return samples + [replace(s, synthetic=True) for s in made]


def build_model(config: TrainConfig):
    """Backbone (ImageNet weights when given) + head; takes RGB float 0..255 at input_size."""
    import keras

    size = config.input_size
    if config.backbone == "mobilenetv2":
        from maskwatch.convert.classifier.backbones import mobilenetv2_imagenet
        from maskwatch.convert.weights.mobilenet import mobilenet_v2_pth

        base = mobilenetv2_imagenet(mobilenet_v2_pth(config.weights), input_size=size, include_top=False)
        x = keras.layers.GlobalAveragePooling2D()(base.output)
        x = keras.layers.Dropout(0.2)(x)
    elif config.backbone == "xception":
        if size < 71:
            raise ConfigError(f"--input-size {size}: xception needs at least 71")
        inputs = keras.Input((size, size, 3))
        scaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
        core = keras.applications.Xception(include_top=False, weights=None, input_tensor=scaled)
        if config.weights:
            core.load_weights(str(config.weights), skip_mismatch=True)
        base = keras.Model(inputs, core.output)
        x = keras.layers.GlobalAveragePooling2D()(base.output)
        x = keras.layers.Dense(1024, activation="relu")(x)
        x = keras.layers.Dropout(0.5)(x)
    else:
        raise ConfigError(f"--backbone {config.backbone!r}: choose from {', '.join(BACKBONES)}")
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(base.input, outputs, name=f"mask_classifier_{config.backbone}"), base


def finetune_start(config: TrainConfig, base) -> int:
    """Index of the first backbone layer phase 2 trains (``config.finetune_from`` or the default)."""
    start = config.finetune_from or FINETUNE_FROM[config.backbone]
    names = [layer.name for layer in base.layers]
    if start not in names:
        raise ConfigError(f"--finetune-from {start!r}: no layer of that name in the {config.backbone} backbone "
                          f"(the default is {FINETUNE_FROM[config.backbone]})")
    return names.index(start)


def _arrays(samples: list[FaceSample], size: int) -> tuple[np.ndarray, np.ndarray]:
    return crop_batch(samples, size), np.array([CLASSES.index(s.label) for s in samples])


def draw_weights(samples: list[FaceSample], config: TrainConfig) -> np.ndarray:
    """How likely each sample is drawn: a class's share ~ its count**``sampling_power``; inside a
    class, its synthesized crops get ``synthetic_share`` (when given) and each data set's real crops
    a share ~ their count**``source_power``; a sample gets its group's share over the group's size."""
    share = config.synthetic_share
    if share is not None and not 0 <= share <= 1:
        raise ConfigError(f"--synthetic-share {share}: give a share between 0 and 1")
    labels = np.array([CLASSES.index(s.label) for s in samples])
    groups = np.array(["\0synthetic" if s.synthetic else s.dataset for s in samples])
    weight = np.zeros(len(samples))
    for c in np.unique(labels):
        in_class = labels == c
        names, counts = np.unique(groups[in_class], return_counts=True)
        real = names != "\0synthetic"
        mass = np.where(real, counts.astype(float) ** config.source_power, 0.0)
        mass = mass / mass.sum() if mass.sum() else mass
        if not real.all():  # synthesized crops: ``share``, or in proportion to their number
            made = share if share is not None and real.any() else counts[~real].sum() / counts.sum()
            mass = np.where(real, mass * (1 - made), made)
        for name, m, n in zip(names, mass, counts):
            weight[in_class & (groups == name)] = m / n
        weight[in_class] *= in_class.sum() ** config.sampling_power / weight[in_class].sum()
    return weight / weight.sum()


class _Batches:
    """Endless augmented batches drawn by :func:`draw_weights`."""

    def __init__(self, samples: list[FaceSample], config: TrainConfig):
        self.samples, self.config = samples, config
        self.rng = np.random.default_rng(config.seed)
        self.labels = np.array([CLASSES.index(s.label) for s in samples])
        self.p = draw_weights(samples, config)

    def __call__(self):
        size = self.config.input_size
        while True:
            picks = self.rng.choice(len(self.samples), self.config.batch, p=self.p)
            x = np.stack([augment(self.samples[i].pixels, size, self.rng) for i in picks]).astype(np.float32)
            yield x, self.labels[picks]


def _dataset(train_set: list[FaceSample], config: TrainConfig):
    import tensorflow as tf

    return tf.data.Dataset.from_generator(_Batches(train_set, config), output_signature=(
        tf.TensorSpec((None, config.input_size, config.input_size, 3), tf.float32),
        tf.TensorSpec((None,), tf.int64))).prefetch(2)


def train(config: TrainConfig, samples: list[FaceSample]):
    """Train on the train side, stop early on the val side's macro F1; returns (model, history)."""
    import keras

    keras.utils.set_random_seed(config.seed)
    train_set = [s for s in samples if s.split == "train"]
    val = [s for s in samples if s.split == "val"]
    x_val, y_val = _arrays(val, config.input_size)
    val_sets = {name: np.array([s.dataset == name for s in val]) for name in sorted({s.dataset for s in val})}
    model, base = build_model(config)
    cut = finetune_start(config, base)
    data = _dataset(train_set, config)
    predict = lambda x: model.predict(x.astype(np.float32), batch_size=256, verbose=0)
    history = []

    def phase(name: str, epochs: int, lr: float):
        model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy")
        best, best_weights, waited = -1.0, model.get_weights(), 0
        for epoch in range(epochs):
            started = time.perf_counter()
            fit = model.fit(data, steps_per_epoch=config.steps_per_epoch, epochs=1, verbose=0)
            probabilities = predict(x_val)
            figures = per_class(confusion(y_val, probabilities.argmax(1), len(CLASSES)), CLASSES)
            by_set = {name: per_class(confusion(y_val[k], probabilities[k].argmax(1), len(CLASSES)), CLASSES)["macro_f1"]
                      for name, k in val_sets.items()}
            score = figures["macro_f1"]
            history.append({"phase": name, "epoch": epoch + 1, "loss": float(fit.history["loss"][-1]),
                            "val_macro_f1": figures["macro_f1"], "val_macro_f1_by_dataset": by_set, "score": score,
                            "seconds": round(time.perf_counter() - started, 1)})
            log.info("%s epoch %d: loss %.4f, val macro F1 %.4f, by data set %s (%.0f s)", name, epoch + 1,
                     history[-1]["loss"], figures["macro_f1"], {k: round(v, 4) for k, v in by_set.items()},
                     history[-1]["seconds"])
            if score > best:
                best, best_weights, waited = score, model.get_weights(), 0
            else:
                waited += 1
                if waited >= config.patience:
                    break
        model.set_weights(best_weights)

    base.trainable = False
    phase("head", config.head_epochs, config.head_lr)
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)
    phase("finetune", config.finetune_epochs, config.finetune_lr)
    return model, history


def train_quantization_aware(config: TrainConfig, samples: list[FaceSample], model, history: list | None = None):
    """Phase 3: a quantization-aware copy of the trained ``model`` fine-tuned on the same batches
    toward ``config.qat_target`` (:func:`maskwatch.convert.classifier.qat.fine_tune`); None when ``config.qat_epochs`` is 0.
    Its epochs join ``history``."""
    epochs = qat_epochs(config)
    if epochs <= 0:
        return None
    import tf_keras

    from maskwatch.convert.classifier.qat import fine_tune

    tf_keras.utils.set_random_seed(config.seed)
    x_val, y_val = _arrays([s for s in samples if s.split == "val"], config.input_size)
    data = _dataset([s for s in samples if s.split == "train"], config)
    return fine_tune(model, data, x_val.astype(np.float32), y_val, epochs, config.steps_per_epoch, config.qat_lr, history,
                     distil=config.qat_target == "float")


def qat_epochs(config: TrainConfig) -> int:
    """Epochs of phase 3: ``config.qat_epochs``, or the backbone's default."""
    if config.qat_epochs is not None:
        return config.qat_epochs
    return QAT_EPOCHS.get(config.backbone, 0)
