"""The training loss of the mask-aware RetinaFace (TensorFlow).

Over a batch, every term normalised by the number of matched (positive) anchors:

- box: smooth L1 between predicted and encoded face boxes on positive anchors;
- face: cross-entropy of face/background on positives and on the hardest negatives, three
  for each positive in the same image (hard-negative mining). Anchors the original detector
  (the teacher) scores as a face above ``ignore_teacher_score`` with no annotated face matched
  are left out of the negatives: the street scenes leave many background faces unannotated, and
  teaching the detector that those are background would unteach it faces;
- landmarks: smooth L1 to the teacher's own landmark outputs on positive anchors (the scenes have
  no landmarks; distillation keeps the head where it was instead of letting it drift);
- mask: cross-entropy of the mask head on positive anchors, each weighted by its class's weight
  (the rare ``mask_weared_incorrect`` heavily), normalised by the weights' sum.
"""
from __future__ import annotations

from dataclasses import dataclass

NEGATIVES_PER_POSITIVE = 3


@dataclass(frozen=True)
class LossWeights:
    box: float = 2.0
    face: float = 1.0
    landmark: float = 1.0
    mask: float = 1.0
    mask_classes: tuple[float, float, float] = (1.0, 2.0, 6.0)  #: with, without, incorrect
    ignore_teacher_score: float = 0.5


def _smooth_l1(difference):
    import tensorflow as tf

    absolute = tf.abs(difference)
    return tf.reduce_sum(tf.where(absolute < 1.0, 0.5 * difference ** 2, absolute - 0.5), axis=-1)


def detector_loss(out: dict, teacher: dict, positive, boxes, labels, weights: LossWeights) -> dict:
    """Loss terms and ``total``. ``out`` and ``teacher`` hold per-anchor tensors over all levels:
    ``bbox`` (B, A, 4), ``landmark`` (B, A, 10), ``class`` (B, A, 2) logits, ``mask`` (B, A, 3)
    logits (student only); ``positive`` (B, A) bool, ``boxes`` (B, A, 4) encoded targets,
    ``labels`` (B, A) mask labels (-1 where not positive)."""
    import tensorflow as tf  # here, not at the top: the CLI reads LossWeights without the toolchain

    pos = tf.cast(positive, tf.float32)
    num_pos = tf.maximum(tf.reduce_sum(pos), 1.0)
    box = tf.reduce_sum(_smooth_l1(out["bbox"] - boxes) * pos) / num_pos
    landmark = tf.reduce_sum(_smooth_l1(out["landmark"] - teacher["landmark"]) * pos) / num_pos

    face_ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(positive, tf.int32), out["class"])
    teacher_face = tf.nn.softmax(teacher["class"])[..., 1]
    candidate = tf.logical_and(tf.logical_not(positive), teacher_face <= weights.ignore_teacher_score)
    negative_loss = tf.where(candidate, tf.stop_gradient(face_ce), -1.0)
    rank = tf.argsort(tf.argsort(negative_loss, axis=1, direction="DESCENDING"), axis=1)
    anchors = tf.shape(pos)[1]
    per_image = tf.minimum(NEGATIVES_PER_POSITIVE * tf.cast(tf.reduce_sum(pos, axis=1), tf.int32), anchors - 1)
    hard = tf.logical_and(candidate, rank < per_image[:, None])
    face = tf.reduce_sum(face_ce * (pos + tf.cast(hard, tf.float32))) / num_pos

    safe_labels = tf.maximum(labels, 0)
    mask_ce = tf.nn.sparse_softmax_cross_entropy_with_logits(safe_labels, out["mask"])
    mask_weight = tf.gather(tf.constant(weights.mask_classes, tf.float32), safe_labels) * pos
    mask = tf.reduce_sum(mask_ce * mask_weight) / tf.maximum(tf.reduce_sum(mask_weight), 1.0)

    total = weights.box * box + weights.face * face + weights.landmark * landmark + weights.mask * mask
    return {"total": total, "box": box, "face": face, "landmark": landmark, "mask": mask}
