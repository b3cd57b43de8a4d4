"""The trainable RetinaFace: parity with the frozen graph, anchor matching, the loss, scene loading,
and a short real training run whose files the runtime loads and reads mask states from."""
import json

import numpy as np
import pytest

from maskwatch.convert.detector.anchor_match import corners, encode_boxes, iou_matrix, match
from maskwatch.convert.data.scenes import load_voc_scenes
from maskwatch.edge.postprocess import anchors, decode_boxes


# ---------------------------------------------------------------- anchors and matching (numpy only)

def test_encoding_inverts_the_runtime_decoder():
    priors = anchors(64, 64)[:50]
    rng = np.random.default_rng(0)
    centre = priors[:, :2] + rng.uniform(-4, 4, (50, 2))
    size = priors[:, 2:] * rng.uniform(0.5, 2.0, (50, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    assert np.allclose(decode_boxes(encode_boxes(boxes, priors), priors), boxes, atol=1e-3)


def test_a_face_on_an_anchor_matches_it_and_its_overlapping_neighbours():
    priors = anchors(64, 64)
    face = corners(priors[10:11])  # exactly anchor 10
    targets = match(face, np.array([2]), priors)
    assert targets.positive[10] and np.allclose(targets.boxes[10], 0, atol=1e-5)
    overlaps = iou_matrix(face, corners(priors))[0]
    assert set(np.flatnonzero(targets.positive)) == set(np.flatnonzero(overlaps >= 0.35))
    assert (targets.labels[targets.positive] == 2).all() and (targets.labels[~targets.positive] == -1).all()


def test_a_small_face_gets_its_best_anchor_but_a_tiny_one_none():
    priors = anchors(64, 64)
    small = np.array([[20, 20, 30, 30]], np.float32)  # 10 px: IoU with a 16 px anchor about 0.39 at best
    best = iou_matrix(small, corners(priors))[0].argmax()
    assert match(small, np.array([0]), priors).positive[best]
    tiny = np.array([[20, 20, 24, 24]], np.float32)  # 4 px: no anchor reaches IoU 0.2
    assert not match(tiny, np.array([0]), priors).positive.any()
    assert not match(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), priors).positive.any()


def test_a_lower_best_anchor_threshold_trains_on_faces_smaller_than_the_anchors():
    priors = anchors(64, 64)
    tiny = np.array([[21, 21, 27, 27]], np.float32)  # 6 px: IoU with its best 16 px anchor about 0.14
    best = iou_matrix(tiny, corners(priors))[0].argmax()
    assert not match(tiny, np.array([1]), priors).positive.any()
    lowered = match(tiny, np.array([1]), priors, min_best=0.1)
    assert np.flatnonzero(lowered.positive).tolist() == [best] and lowered.labels[best] == 1


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_train_detector_refuses_a_best_anchor_threshold_outside_its_range(value, tmp_path):
    from maskwatch.convert.detector.train import DetectorTrainConfig
    from maskwatch.edge.errors import ConfigError

    with pytest.raises(ConfigError, match="--match-min-iou"):
        DetectorTrainConfig(voc=(tmp_path,), match_min_iou=value).check()


@pytest.mark.parametrize("sizes", [(24, 12), (2, 8), (16, 64), (12,)])
def test_train_detector_refuses_finest_anchors_out_of_order_or_range(sizes, tmp_path):
    from maskwatch.convert.detector.train import DetectorTrainConfig
    from maskwatch.edge.errors import ConfigError

    with pytest.raises(ConfigError, match="--stride8-anchors"):
        DetectorTrainConfig(voc=(tmp_path,), stride8_anchors=sizes).check()


def test_smaller_finest_anchors_train_on_faces_the_default_ones_leave_out():
    from maskwatch.convert.detector.train import DetectorTrainConfig

    config = DetectorTrainConfig(stride8_anchors=(12, 32))
    assert config.anchor_config.min_sizes == ((12, 32), (64, 128), (256, 512))
    tiny = np.array([[21, 21, 28, 28]], np.float32)  # 7 px: IoU about 0.19 with a 16 px anchor, 0.34 with 12
    assert not match(tiny, np.array([0]), anchors(64, 64)).positive.any()
    assert match(tiny, np.array([0]), anchors(64, 64, config.anchor_config)).positive.sum() == 1


# ---------------------------------------------------------------- bad VOC input is counted, never fatal

def _voc(root, name, objects, image=True, size=(64, 48)):
    import cv2

    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    body = "".join(f"<object><name>{label}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for label, b in objects)
    (root / "annotations" / f"{name}.xml").write_text(
        f"<annotation><filename>{name}.png</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
        f"</size>{body}</annotation>")
    if image:
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.full((size[1], size[0], 3), 90, np.uint8))


def test_bad_voc_input_is_counted_and_skipped(tmp_path):
    _voc(tmp_path, "good", [("with_mask", (5, 5, 20, 20)), ("masked_ninja", (1, 1, 9, 9)),
                            ("without_mask", (30, 10, 80, 40)), ("with_mask", (70, 60, 90, 80)),
                            ("with_mask", (10, 10, 10, 30))])
    _voc(tmp_path, "missing", [("with_mask", (5, 5, 20, 20))], image=False)
    _voc(tmp_path, "unreadable", [("with_mask", (5, 5, 20, 20))], image=False)
    (tmp_path / "images" / "unreadable.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "annotations" / "broken.xml").write_text("<annotation><object>")
    scenes, report = load_voc_scenes(tmp_path)
    assert [s.path.name for s in scenes] == ["good.png"]
    good = scenes[0]
    assert good.labels.tolist() == [0, 1]  # with_mask kept, without_mask clipped and kept
    assert good.boxes[1].tolist() == [30, 10, 64, 40]
    assert report.skipped == {"unknown_label": 1, "outside_image": 1, "degenerate": 1}
    assert report.skipped_files == {"malformed_xml": 1, "missing_image": 1, "unreadable_image": 1}
    assert report.clipped == 1 and report.faces == {"with_mask": 1, "without_mask": 1}


def test_augmented_scenes_keep_faces_inside_the_canvas(data):
    from maskwatch.convert.data.scene_augment import augment_scene

    scenes, _ = load_voc_scenes(data / "andrewmvd", limit=6)
    rng = np.random.default_rng(1)
    kept = 0
    for scene in scenes * 4:
        image, boxes, labels = augment_scene(scene.pixels, scene.boxes, scene.labels, 160, rng)
        assert image.shape == (160, 160, 3) and image.dtype == np.uint8 and len(boxes) == len(labels)
        assert (boxes >= 0).all() and (boxes <= 160).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        kept += len(boxes)
    assert kept > 0


def test_a_face_only_detector_reads_masks_from_the_crop_alone(sample_image, tmp_path, capsys):
    from maskwatch.edge.cli import main
    from maskwatch.edge.detector import FaceDetector
    from maskwatch.edge.image import read_image

    detector = FaceDetector("retinaface_mnv2_320_int8.tflite")
    assert detector.labels is None and detector.detect(read_image(sample_image)).mask is None
    assert main(["predict", str(sample_image), "--jsonl", str(tmp_path / "p.jsonl"), "--mask-rule", "product",
                 "--detector", "retinaface_mnv2_320_int8.tflite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no mask head" in err and "\n" not in err


# ---------------------------------------------------------------- TensorFlow: rebuild, loss, training

@pytest.fixture(scope="module")
def graph_def(graph_path):
    from maskwatch.convert.detector.graph import parse_graph_def

    return parse_graph_def(graph_path.read_bytes())


@pytest.mark.convert
def test_keras_rebuild_matches_the_frozen_graph_at_two_sizes(graph_def, sample_image, data):
    from maskwatch.convert.detector.graph import OUTPUT_NAMES, HeadsModel
    from maskwatch.convert.detector.network import KerasHeadsNetwork, from_graph
    from maskwatch.edge.image import letterbox, read_image

    reference = HeadsModel(graph_def)
    network = KerasHeadsNetwork(from_graph(graph_def, mask=True))
    assert network.output_names == OUTPUT_NAMES + ["mask_8", "mask_16", "mask_32"]
    street = sorted((data / "andrewmvd" / "images").glob("*.png"))[0]
    for path, size in ((sample_image, 320), (street, 640)):
        tensor = letterbox(read_image(path), size, size)[0][None].astype(np.float32)
        ours, theirs = network.numpy(tensor), reference.numpy(tensor)
        for name in OUTPUT_NAMES:
            assert ours[name].shape == theirs[name].shape
            assert np.abs(ours[name] - theirs[name]).max() < 2e-4, (path.name, size, name)
        assert ours["mask_8"].shape == theirs["class_8"].shape[:2] + (3,)


@pytest.mark.convert
def test_new_anchors_keep_the_detector_it_was(graph_def, data):
    """Re-expressed against smaller finest anchors, the wheel's detector decodes to the same boxes and
    landmarks on a real scene, and the teacher's landmarks scaled for training agree with it."""
    from maskwatch.convert.detector.train import DetectorTrainConfig, _per_anchor, teacher_landmark_scale
    from maskwatch.convert.detector.network import from_graph, rescale_to_anchors
    from maskwatch.edge.image import letterbox, read_image
    from maskwatch.edge.postprocess import AnchorConfig, decode_landmarks

    config = DetectorTrainConfig(crop_size=320, stride8_anchors=(12, 24))
    street = sorted((data / "andrewmvd" / "images").glob("*.png"))[0]
    tensor = letterbox(read_image(street), 320, 320)[0][None].astype(np.float32)
    model = from_graph(graph_def, mask=True)
    before = {k: v[0].numpy() for k, v in _per_anchor(model(tensor)).items()}
    rescale_to_anchors(model, AnchorConfig(), config.anchor_config)
    after = {k: v[0].numpy() for k, v in _per_anchor(model(tensor)).items()}
    old, new = anchors(320, 320), anchors(320, 320, config.anchor_config)
    assert not np.allclose(after["bbox"], before["bbox"], atol=1e-2)  # the raw heads did change
    assert np.abs(decode_boxes(after["bbox"], new) - decode_boxes(before["bbox"], old)).max() < 1e-2
    assert np.abs(decode_landmarks(after["landmark"], new) - decode_landmarks(before["landmark"], old)).max() < 1e-2
    assert np.abs(before["landmark"] * teacher_landmark_scale(config) - after["landmark"]).max() < 1e-3
    assert np.array_equal(after["class"], before["class"]) and np.array_equal(after["mask"], before["mask"])


def _synthetic_out(targets_boxes, positive, anchors_count=6):
    import tensorflow as tf

    face_logits = np.where(positive[..., None], [[-4.0, 4.0]], [[4.0, -4.0]]).astype(np.float32)
    return {"bbox": tf.constant(targets_boxes), "landmark": tf.zeros((1, anchors_count, 10)),
            "class": tf.constant(face_logits),
            "mask": tf.constant(np.tile([[[6.0, -6.0, -6.0]]], (1, anchors_count, 1)).astype(np.float32))}


@pytest.mark.convert
def test_loss_is_zero_for_a_perfect_prediction_and_mines_three_negatives_per_face():
    tf = pytest.importorskip("tensorflow", reason="maskwatch[convert] (TensorFlow) is not installed")

    from maskwatch.convert.detector.loss import LossWeights, detector_loss

    positive = np.array([[True, False, False, False, False, False]])
    boxes = np.zeros((1, 6, 4), np.float32)
    boxes[0, 0] = [0.5, -0.2, 0.1, 0.3]
    labels = np.array([[0, -1, -1, -1, -1, -1]])
    out = _synthetic_out(boxes, positive)
    teacher = {"landmark": tf.zeros((1, 6, 10)), "class": out["class"]}
    perfect = detector_loss(out, teacher, positive, boxes, labels, LossWeights())
    assert float(perfect["box"]) == 0.0 and float(perfect["landmark"]) == 0.0
    assert float(perfect["face"]) < 0.01 and float(perfect["mask"]) < 0.01
    # every negative scored as a face: only 3 (one positive) are mined, so the face loss is about 3 x 8
    wrong = dict(out, **{"class": tf.constant(np.tile([[[-4.0, 4.0]]], (1, 6, 1)).astype(np.float32))})
    mined = float(detector_loss(wrong, teacher, positive, boxes, labels, LossWeights())["face"])
    assert 3 * 8 - 0.1 < mined < 3 * 8 + 0.1
    # negatives the teacher calls faces (an unannotated face) are left out of the mining
    teacher_faces = {"landmark": teacher["landmark"], "class": wrong["class"]}
    ignored = float(detector_loss(wrong, teacher_faces, positive, boxes, labels, LossWeights())["face"])
    assert ignored < 0.01
    # the rare class weighs more: the same error on an incorrectly worn mask costs the same per weight
    bad_mask = dict(out, mask=tf.constant(np.tile([[[-6.0, 6.0, -6.0]]], (1, 6, 1)).astype(np.float32)))
    assert float(detector_loss(bad_mask, teacher, positive, boxes, labels, LossWeights())["mask"]) > 10


@pytest.mark.convert
def test_a_few_steps_on_one_batch_lower_the_loss(graph_def, data):
    import keras

    from maskwatch.convert.detector.train import (DetectorTrainConfig, _train_step_fn, load_scenes, make_batch,
                                                  teacher_landmark_scale)
    from maskwatch.convert.detector.network import from_graph

    config = DetectorTrainConfig(voc=(data / "andrewmvd",), limit=8, crop_size=160, batch_size=2)
    scenes, _ = load_scenes(config)
    keras.utils.set_random_seed(0)
    model, teacher = from_graph(graph_def, mask=True), from_graph(graph_def)
    step = _train_step_fn(model, teacher, keras.optimizers.Adam(1e-3), model.trainable_variables, config.loss,
                          teacher_landmark_scale(config))
    batch = make_batch(scenes, config, np.random.default_rng(0))
    losses = [float(step(*batch)["total"]) for _ in range(6)]
    assert losses[-1] < losses[0], losses


@pytest.fixture(scope="module")
def trained(tmp_path_factory, graph_path, data):
    """``maskwatch convert train-detector`` for a few steps on a handful of real scenes, exported."""
    from maskwatch.edge.cli import main

    out = tmp_path_factory.mktemp("detector")
    code = main(["convert", "train-detector", "--voc", str(data / "andrewmvd"), "--limit", "16", "--head-epochs", "1",
                 "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop-size", "160",
                 "--eval-size", "320", "--sizes", "160", "--formats", "tflite-int8", "onnx-fp32",
                 "--stride8-anchors", "12", "32",
                 "--out", str(out), "--graph", str(graph_path)])
    assert code == 0
    return out


@pytest.mark.convert
def test_training_exports_files_the_runtime_reads_mask_states_from(trained, sample_image):
    from maskwatch.edge.detector import FaceDetector
    from maskwatch.edge.image import read_image
    from maskwatch.edge.manifest import Manifest

    manifest = Manifest.load(trained)
    assert set(manifest.entries) == {"retinaface_mask_mnv2_160_int8.tflite", "retinaface_mask_mnv2_fp32.onnx"}
    history = json.loads((trained / "training" / "retinaface_mask_mnv2.json").read_text())
    assert [e["phase"] for e in history["epochs"]] == ["head", "finetune"]
    for name, entry in manifest.entries.items():
        assert entry.outputs[-3:] == ["mask_8", "mask_16", "mask_32"] and len(entry.outputs) == 12
        assert entry.labels == ["with_mask", "without_mask", "mask_weared_incorrect"]
        assert entry.source["base"]["sha256"].startswith("cf242e86") and entry.source["trained_on"] == ["andrewmvd"]
        assert "epochs" not in entry.source["training"]  # per-epoch history stays in the sidecar
        assert entry.source["training"]["history"] == "training/retinaface_mask_mnv2.json"
        assert 0 <= entry.metrics["val"]["face_ap"] <= 1
        assert entry.anchors["min_sizes"] == [[12, 32], [64, 128], [256, 512]]  # as trained, for the runtime
        detector = FaceDetector(trained / name, input_size=320)
        faces = detector.detect(read_image(sample_image))
        assert detector.labels == entry.labels and len(faces) >= 1
        assert faces.mask.shape == (len(faces), 3) and np.allclose(faces.mask.sum(axis=1), 1, atol=1e-4)


@pytest.mark.convert
def test_every_mask_rule_runs_with_a_mask_aware_detector(trained, sample_image, tmp_path):
    from maskwatch.edge.cli import main

    for rule in ("crop", "detector", "product", "size"):
        out = tmp_path / f"{rule}.jsonl"
        assert main(["predict", str(sample_image), "--jsonl", str(out), "--detector",
                     str(trained / "retinaface_mask_mnv2_fp32.onnx"), "--mask-rule", rule]) == 0
        detection = json.loads(out.read_text())["detections"][0]
        assert len(detection["mask_probabilities"]) == 3
        assert ("crop_probabilities" in detection) == (rule != "detector")
        if rule == "detector":
            assert detection["label_score"] == max(detection["mask_probabilities"])
