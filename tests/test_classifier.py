"""The shipped mask classifier on real runtimes and real crops."""
import csv

import numpy as np
import pytest

from maskwatch.edge.classifier import DEFAULT_CLASSIFIER, MaskClassifier
from maskwatch.edge.cli import main
from maskwatch.edge.detector import FaceDetector
from maskwatch.edge.errors import ModelError
from maskwatch.edge.image import expand_images, read_image
from maskwatch.edge.manifest import Manifest
from maskwatch.benchmarks.accuracy.splits import select

SHIPPED = sorted(e.file for e in Manifest.load().find("mask_classification") if e.format != "keras")  # keras: the float baseline


def test_a_classifier_ships_with_labels_and_figures():
    assert DEFAULT_CLASSIFIER in SHIPPED
    for name in SHIPPED:
        entry = Manifest.load().entries[name]
        assert entry.labels == ["with_mask", "without_mask", "mask_weared_incorrect"]
        assert entry.metrics["crops"] > 1000


@pytest.mark.parametrize("name", SHIPPED)
def test_the_unmasked_astronaut_is_without_mask(name, sample_image):
    image = read_image(sample_image)
    faces = FaceDetector("retinaface_mnv2_320_int8.tflite").detect(image)
    classifier = MaskClassifier(name)
    probabilities = classifier.classify_faces(image, faces.boxes)
    assert probabilities.shape == (1, 3)
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-2)
    assert classifier.labels[int(probabilities[0].argmax())] == "without_mask"


def test_no_faces_gives_an_empty_typed_result():
    assert MaskClassifier().classify_crops([]).shape == (0, 3)


@pytest.mark.parametrize("name", SHIPPED)
def test_validation_crops_are_classified_well(name, data):
    """Crops from the val side of chandrikadeb7 (never trained on): most must be right."""
    classifier = MaskClassifier(name)
    correct = total = 0
    for label in ("with_mask", "without_mask"):
        files = select(expand_images([data / "crops" / "chandrikadeb7" / label]), "val")[:60]
        crops = [read_image(f)[:, :, ::-1] for f in files]
        predicted = classifier.classify_crops(crops).argmax(1)
        correct += int((predicted == classifier.labels.index(label)).sum())
        total += len(files)
    assert total >= 100 and correct / total > 0.9


def test_crops_are_stretched_smoothly_both_ways():
    import cv2

    from maskwatch.edge.image import stretch

    rng = np.random.default_rng(0)
    small, large = rng.integers(0, 256, (20, 30, 3), np.uint8), rng.integers(0, 256, (200, 150, 3), np.uint8)
    np.testing.assert_array_equal(stretch(small, 96, 96), cv2.resize(small, (96, 96), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(stretch(large, 96, 96), cv2.resize(large, (96, 96), interpolation=cv2.INTER_AREA))
    assert MaskClassifier().resize(small).shape == (96, 96, 3)
    # enlarged bilinear, a 20 px face has no 5 px blocks of one value (INTER_AREA's nearest-like steps)
    row = stretch(small, 96, 96)[40, :, 0].astype(int)
    assert np.count_nonzero(np.diff(row)) > 80


@pytest.mark.parametrize("name", SHIPPED)
def test_small_street_faces_are_classified_well(name, data):
    """Faces of 16-67 px from the val side of the street scenes, enlarged to the input as the runtime
    does: most unmasked ones must be called unmasked (enlarging them blocky, as OpenCV's INTER_AREA
    does, halves that: the crops in training are smooth)."""
    from maskwatch.edge.image import crop_with_margin
    from maskwatch.benchmarks.accuracy.voc import load_voc_folder
    from maskwatch.benchmarks.accuracy.splits import split_of

    root = data / "andrewmvd"
    classifier = MaskClassifier(name)
    crops, truth = [], []
    for a in load_voc_folder(root):
        path = root / "images" / a.filename
        if split_of(path) != "val":
            continue
        image = read_image(path)
        for box, label in zip(a.boxes, a.labels):
            side = min(box[2] - box[0], box[3] - box[1])
            if 16 <= side < 67 and label != "mask_weared_incorrect":
                crops.append(crop_with_margin(image, box, classifier.margin)[:, :, ::-1])
                truth.append(classifier.labels.index(label))
    predicted, truth = classifier.classify_crops(crops).argmax(1), np.array(truth)
    unmasked = truth == classifier.labels.index("without_mask")
    assert len(crops) > 250 and unmasked.sum() > 40
    assert (predicted[unmasked] == truth[unmasked]).mean() > 0.85
    assert (predicted[~unmasked] == truth[~unmasked]).mean() > 0.95


def test_classify_command_writes_csv(data, tmp_path):
    folder = data / "crops" / "chandrikadeb7" / "without_mask"
    files = sorted(folder.iterdir())[:5]
    out = tmp_path / "labels.csv"
    assert main(["classify", *map(str, files), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == [str(f) for f in files]
    assert all(r["label"] in ("with_mask", "without_mask", "mask_weared_incorrect") for r in rows)
    assert all(0 < float(r["score"]) <= 1 for r in rows)


def test_classify_bad_input_is_one_line(tmp_path, capsys):
    assert main(["classify", str(tmp_path / "nothing-*.jpg")]) == 2
    assert "no image files" in capsys.readouterr().err
    (tmp_path / "broken.jpg").write_bytes(b"no")
    assert main(["classify", str(tmp_path / "broken.jpg")]) == 2
    assert "broken.jpg: not a readable image" in capsys.readouterr().err
    (tmp_path / "broken-too.png").write_bytes(b"")
    assert main(["classify", str(tmp_path)]) == 2
    assert "none of the 2 image files could be read" in capsys.readouterr().err


def test_classify_skips_a_broken_crop_and_keeps_the_rest(data, tmp_path, caplog):
    good = sorted((data / "crops" / "chandrikadeb7" / "with_mask").iterdir())[:2]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "new" / "folder" / "labels.csv"  # folders are made
    assert main(["classify", str(good[0]), str(tmp_path / "broken.jpg"), str(good[1]), "--csv", str(out)]) == 1
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == [str(good[0]), str(good[1])]
    assert "broken.jpg: not a readable image (skipped)" in caplog.text


def test_classify_unwritable_csv_is_one_line(tmp_path, sample_image, capsys):
    (tmp_path / "file").write_text("")
    assert main(["classify", str(sample_image), "--csv", str(tmp_path / "file" / "labels.csv")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"maskwatch: error: {tmp_path / 'file' / 'labels.csv'}: cannot write there")


def test_a_detector_is_not_a_classifier():
    with pytest.raises(ModelError, match="not a mask classifier"):
        MaskClassifier("retinaface_mnv2_320_int8.tflite")


def test_classify_batches_give_the_one_by_one_labels(data, tmp_path):
    files = sorted((data / "crops" / "chandrikadeb7" / "without_mask").iterdir())[:70]  # more than one batch
    out = tmp_path / "labels.csv"
    assert main(["classify", *map(str, files), "--model", "mask_mnv2_96_fp32.onnx", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    classifier = MaskClassifier("mask_mnv2_96_fp32.onnx")
    for path, row in zip(files, rows, strict=True):
        p = classifier.classify_crops([read_image(path)[:, :, ::-1]])[0]
        assert row["file"] == str(path) and row["label"] == classifier.labels[int(p.argmax())]
        assert float(row["score"]) == pytest.approx(float(p.max()), abs=1e-4)


def aligned_models(tmp_path, align="landmarks"):
    """The shipped int8 classifier under a manifest entry that says it cuts faces on their landmarks."""
    import json
    import shutil

    from maskwatch.models import __file__ as models_init
    from pathlib import Path

    shipped = Path(models_init).parent
    models = tmp_path / "models"
    models.mkdir()
    manifest = json.loads((shipped / "manifest.json").read_text())
    entry = manifest["models"][DEFAULT_CLASSIFIER]
    entry["preprocessing"]["align"] = align
    manifest["models"] = {DEFAULT_CLASSIFIER: entry}
    shutil.copy(shipped / DEFAULT_CLASSIFIER, models)
    (models / "manifest.json").write_text(json.dumps(manifest))
    return models


def test_an_aligned_classifier_reads_the_upright_face_from_the_landmarks(tmp_path, sample_image):
    from maskwatch.edge.align import aligned_face
    from maskwatch.edge.events import Fanout
    from maskwatch.edge.face_reader import FaceReader
    from maskwatch.edge.gpio import Indicator
    from maskwatch.edge.image import crop_with_margin
    from maskwatch.edge.pipeline import Pipeline
    from maskwatch.edge.sources import Frame
    from maskwatch.edge.tracker import Tracker

    image = read_image(sample_image)
    faces = FaceDetector("retinaface_mnv2_320_int8.tflite").detect(image)
    aligned, boxed = MaskClassifier(models_dir=aligned_models(tmp_path)), MaskClassifier()
    assert aligned.aligned and not boxed.aligned
    crops = aligned.face_crops(image, faces.boxes, faces.landmarks)
    np.testing.assert_array_equal(crops[0], aligned_face(image, faces.landmarks[0], aligned.margin))
    assert crops[0].shape[0] == crops[0].shape[1]  # square and upright, not the box's shape
    assert crops[0].shape != crop_with_margin(image, faces.boxes[0], boxed.margin).shape
    probabilities = aligned.classify_faces(image, faces.boxes, faces.landmarks)
    np.testing.assert_allclose(probabilities, aligned.classify_crops([crops[0][:, :, ::-1]]))
    with pytest.raises(ValueError, match="cuts faces on their landmarks"):
        aligned.classify_faces(image, faces.boxes)
    reader = FaceReader(FaceDetector("retinaface_mnv2_320_int8.tflite"), aligned)  # the seam passes the landmarks
    np.testing.assert_allclose(reader.read(image).probabilities, probabilities, atol=1e-6)
    pipeline = Pipeline(reader, Tracker(), Indicator({"backend": "none"}), Fanout([]), "aligned")
    for i in range(7):  # classified every 3rd frame: three agreeing votes set the label
        seen = pipeline.process(Frame(image, i, i / 10, "aligned")).tracks
    assert [t.label for t in seen] == [aligned.labels[int(probabilities[0].argmax())]]
    pipeline.close()
    points_in_one_spot = np.repeat(faces.landmarks[:, :1], 5, axis=1)  # cannot be aligned: the box is used
    np.testing.assert_array_equal(aligned.face_crops(image, faces.boxes, points_in_one_spot)[0],
                                  crop_with_margin(image, faces.boxes[0], aligned.margin))


def test_an_unknown_crop_alignment_is_refused_naming_the_file(tmp_path):
    with pytest.raises(ModelError, match=r"mask_mnv2_96_int8.tflite: preprocessing.align 'eyes' is not known"):
        MaskClassifier(models_dir=aligned_models(tmp_path, align="eyes"))
