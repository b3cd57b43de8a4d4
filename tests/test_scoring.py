"""Scoring on hand-made ground truth and predictions whose AP is worked out in the comments."""
import logging

import numpy as np
import pytest

from maskwatch.edge.errors import InputError
from maskwatch.edge.labels import CLASSES
from maskwatch.benchmarks.accuracy.voc import VocAnnotation, load_voc_folder, read_voc_annotations
from maskwatch.benchmarks.accuracy.scoring import average_precision, detection_ap, evaluate_crops, evaluate_detections
from maskwatch.benchmarks.accuracy.tables import table

W, WO, INC = CLASSES


def box(x, y, size=40):
    return [x, y, x + size, y + size]


def gt(boxes, labels=None):
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "labels": labels or [W] * len(boxes)}


def pred(boxes, scores, labels=None):
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": scores, "labels": labels or [W] * len(boxes)}


# ---------------------------------------------------------------- average_precision


def test_average_precision_envelope_gives_five_sixths():
    # 3 faces; detections TP, FP, TP, TP:
    #   recall    1/3, 1/3, 2/3, 1
    #   precision 1,   1/2, 2/3, 3/4
    # envelope (best precision at recall >= r): 1 at r=1/3, 3/4 at 2/3 (not 2/3), 3/4 at 1
    # AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 1/3 + 1/2 = 5/6
    assert average_precision([1 / 3, 1 / 3, 2 / 3, 1], [1, 1 / 2, 2 / 3, 3 / 4]) == pytest.approx(5 / 6)


def test_average_precision_edges():
    assert average_precision([], []) == 0.0
    assert average_precision([1.0], [1.0]) == 1.0
    # recall stops at 3/4 with precision 1: AP = 3/4 * 1
    assert average_precision([0.25, 0.5, 0.75], [1, 1, 1]) == pytest.approx(0.75)


# ---------------------------------------------------------------- detection_ap


def test_perfect_predictions_score_one():
    truth = [gt([box(0, 0), box(100, 0)]), gt([box(50, 50)])]
    found = [pred([box(0, 0), box(100, 0)], [0.9, 0.8]), pred([box(50, 50)], [0.7])]
    r = detection_ap(truth, found)
    assert r == {"ap": 1.0, "recall": 1.0, "precision": 1.0, "positives": 3, "tp": 3, "fp": 0,
                 "ignored": 0, "detections": 3}


def test_sequence_matching_gives_five_sixths():
    # 3 faces; by score: hit A (TP), miss (FP), hit B (TP), hit C (TP) -> AP 5/6 as above
    truth = [gt([box(0, 0), box(100, 0), box(200, 0)])]
    found = [pred([box(0, 0), box(300, 300), box(100, 0), box(200, 0)], [0.9, 0.8, 0.7, 0.6])]
    r = detection_ap(truth, found)
    assert r["ap"] == pytest.approx(5 / 6)
    assert (r["tp"], r["fp"], r["recall"], r["precision"]) == (3, 1, 1.0, 0.75)


def test_missed_face_gives_three_quarters():
    # 4 faces, 3 found without a false positive: recall 3/4 at precision 1 -> AP 3/4
    truth = [gt([box(0, 0), box(100, 0), box(200, 0), box(300, 0)])]
    found = [pred([box(0, 0), box(100, 0), box(200, 0)], [0.9, 0.8, 0.7])]
    r = detection_ap(truth, found)
    assert r["ap"] == pytest.approx(0.75)
    assert (r["recall"], r["precision"], r["positives"]) == (0.75, 1.0, 4)


def test_duplicate_detection_is_a_false_positive():
    # one face, two detections on it: the better one TP, the other FP; recall 1 reached at rank 1 -> AP 1
    truth = [gt([box(0, 0)])]
    r = detection_ap(truth, [pred([box(0, 0), box(2, 2)], [0.9, 0.8])])
    assert (r["ap"], r["tp"], r["fp"]) == (1.0, 1, 1)
    # two faces; by score: A (TP), A again (FP, duplicate), B (TP)
    # recall 1/2, 1/2, 1; precision 1, 1/2, 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    truth = [gt([box(0, 0), box(100, 0)])]
    r = detection_ap(truth, [pred([box(0, 0), box(2, 2), box(100, 0)], [0.9, 0.8, 0.7])])
    assert r["ap"] == pytest.approx(5 / 6)
    assert (r["tp"], r["fp"]) == (2, 1)


def test_iou_threshold():
    # a 40 px face and a detection shifted by 10 px: IoU = 30*40 / (2*1600 - 1200) = 0.6
    truth = [gt([box(0, 0)])]
    found = [pred([box(10, 0)], [0.9])]
    assert detection_ap(truth, found, iou_threshold=0.5)["ap"] == 1.0
    assert detection_ap(truth, found, iou_threshold=0.7)["ap"] == 0.0


def test_tiny_faces_are_ignore_regions():
    # a 40 px face and a 10 px one; detections: tiny face .9, a miss .85, the big face .8
    truth = [gt([box(0, 0), box(200, 200, 10)])]
    found = [pred([box(200, 200, 10), box(300, 0), box(0, 0)], [0.9, 0.85, 0.8])]
    # counted: TP, FP, TP over 2 faces -> recall 1/2, 1/2, 1; precision 1, 1/2, 2/3 -> AP 5/6
    r = detection_ap(truth, found)
    assert r["ap"] == pytest.approx(5 / 6) and r["positives"] == 2
    # tiny ignored: its detection counts neither way; FP, TP over 1 face -> precision 1/2 at recall 1 -> AP 1/2
    r = detection_ap(truth, found, ignore_below=16)
    assert r["ap"] == pytest.approx(0.5)
    assert (r["positives"], r["tp"], r["fp"], r["ignored"]) == (1, 1, 1, 1)
    # missing the tiny face costs recall only when it is counted
    found = [pred([box(0, 0)], [0.8])]
    assert detection_ap(truth, found)["recall"] == 0.5
    assert detection_ap(truth, found, ignore_below=16)["recall"] == 1.0
    # two detections on an ignore region: both ignored (VOC 'difficult' semantics), neither a duplicate
    found = [pred([box(200, 200, 10), box(200, 200, 10), box(0, 0)], [0.9, 0.8, 0.7])]
    r = detection_ap(truth, found, ignore_below=16)
    assert (r["ap"], r["ignored"], r["fp"]) == (1.0, 2, 0)


def test_empty_images_and_predictions_without_truth():
    empty = gt([])
    # empty images add nothing
    truth = [empty, gt([box(0, 0)]), empty]
    found = [pred([], []), pred([box(0, 0)], [0.8]), {"boxes": np.zeros((0, 4)), "scores": [], "labels": []}]
    assert detection_ap(truth, found)["ap"] == 1.0
    # a detection on an image without faces is a FP; scored .95 it ranks first: FP, TP -> AP 1/2
    found[2] = pred([box(0, 0)], [0.95])
    r = detection_ap(truth, found)
    assert (r["ap"], r["fp"], r["precision"]) == (0.5, 1, 0.5)
    # no faces at all: AP undefined, detections still counted
    r = detection_ap([empty], [pred([box(0, 0)], [0.9])])
    assert (r["ap"], r["recall"], r["positives"], r["fp"]) == (None, None, 0, 1)
    # faces but no detections: AP 0
    assert detection_ap([gt([box(0, 0)])], [pred([], [])])["ap"] == 0.0


def test_predictions_keyed_by_image_name():
    truth = [VocAnnotation("a.png", 400, 300, np.array([box(0, 0)], np.float32), [W]),
             VocAnnotation("b.png", 400, 300, np.array([box(0, 0)], np.float32), [W])]
    r = detection_ap(truth, {"b.png": pred([box(0, 0)], [0.9])})  # a.png: no predictions
    assert (r["ap"], r["recall"]) == (0.5, 0.5)
    with pytest.raises(InputError, match="'c.png'"):
        detection_ap(truth, {"c.png": pred([box(0, 0)], [0.9])})
    with pytest.raises(InputError, match="1 images of predictions for 2"):
        detection_ap(truth, [pred([], [])])
    with pytest.raises(InputError, match="'a.png'.*1 boxes, 2 scores"):
        detection_ap(truth, {"a.png": pred([box(0, 0)], [0.9, 0.8])})


def test_class_wise_and_class_agnostic_ap():
    # face A is with_mask, face B without_mask; both found, both called without_mask
    truth = [gt([box(0, 0), box(100, 0)], [W, WO])]
    found = [pred([box(0, 0), box(100, 0)], [0.9, 0.8], [WO, WO])]
    # any label: both faces found -> AP 1
    assert detection_ap(truth, found)["ap"] == 1.0
    # with_mask: one positive, no with_mask detection -> AP 0
    assert detection_ap(truth, found, label=W)["ap"] == 0.0
    # without_mask: the detection on A finds no without_mask face (FP), then B (TP) -> AP 1/2
    r = detection_ap(truth, found, label=WO)
    assert (r["ap"], r["tp"], r["fp"], r["positives"]) == (0.5, 1, 1, 1)
    # no class has positives here
    assert detection_ap(truth, found, label=INC)["ap"] is None


def test_class_agnostic_needs_no_labels():
    truth = [gt([box(0, 0)])]
    found = [{"boxes": [box(0, 0)], "scores": [0.9]}]
    assert detection_ap(truth, found)["ap"] == 1.0
    with pytest.raises(InputError, match="no 'labels'"):
        detection_ap(truth, found, label=W)


# ---------------------------------------------------------------- evaluate_detections


def test_evaluate_detections_figures_and_confusion():
    # image 1: A with_mask (called without_mask), B without_mask (right), C a 10 px with_mask face (right)
    # image 2: no faces, nothing found; image 3: no faces, one false without_mask at .1
    truth = [gt([box(0, 0), box(100, 0), box(200, 200, 10)], [W, WO, W]), gt([]), gt([])]
    found = [pred([box(0, 0), box(100, 0), box(200, 200, 10)], [0.9, 0.8, 0.7], [WO, WO, W]), pred([], []),
             pred([box(0, 0)], [0.1], [WO])]
    r = evaluate_detections(truth, found)
    assert r["images"] == 3
    a, s = r["all"], r["ignore_small"]
    # all faces. with_mask: A, C are positives; only C found -> recall 1/2 at precision 1 -> AP 1/2
    # without_mask: FP (A), TP (B), FP (.1) -> recall 1 at rank 2, precision 1/2 -> AP 1/2
    # mask_weared_incorrect: no positives -> None, left out of the means
    assert a["ap"] == {W: 0.5, WO: 0.5, INC: None}
    assert a["map_3class"] == 0.5 and a["map_2class"] == 0.5
    # faces: TP, TP, TP, FP -> AP 1, recall 1
    assert (a["face_ap"], a["face_recall"], a["faces"]["fp"]) == (1.0, 1.0, 1)
    # labels of the three matched faces: rows true, columns predicted
    assert a["labelling"]["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert a["labelling"]["matched"] == 3
    assert a["labelling"]["accuracy"] == pytest.approx(2 / 3)
    # small faces ignored: with_mask keeps only A, never found as with_mask -> AP 0; C's detection is ignored
    assert s["ap"] == {W: 0.0, WO: 0.5, INC: None}
    assert s["map_3class"] == 0.25 and s["map_2class"] == 0.25
    assert s["labelling"]["confusion"] == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert s["faces"]["positives"] == 2 and s["faces"]["ignored"] == 1
    text = table(r)
    assert "| AP@0.5 with_mask | 0.500 | 0.000 |" in text
    assert "| AP@0.5 mask_weared_incorrect | n/a | n/a |" in text
    assert "| with_mask | 1 | 1 | 0 |" in text


def test_evaluate_detections_rejects_unknown_labels():
    with pytest.raises(InputError, match="unknown label 'mask'"):
        evaluate_detections([gt([box(0, 0)])], [pred([box(0, 0)], [0.9], ["mask"])])
    with pytest.raises(InputError, match="no 'labels'"):
        evaluate_detections([gt([box(0, 0)])], [{"boxes": [box(0, 0)], "scores": [0.9]}])


def test_evaluate_detections_all_empty():
    r = evaluate_detections([gt([])], [pred([], [])])
    assert r["all"]["map_3class"] is None and r["all"]["face_ap"] is None
    assert r["all"]["labelling"]["matched"] == 0
    assert "n/a" in table(r)


# ---------------------------------------------------------------- evaluate_crops


def test_evaluate_crops():
    r = evaluate_crops([W, W, WO, INC], [W, WO, WO, INC])
    assert r["count"] == 4 and r["accuracy"] == 0.75
    # with_mask: precision 1/1, recall 1/2, F1 2/3; without_mask: precision 1/2, recall 1, F1 2/3; incorrect: 1
    assert r["classes"][W]["recall"] == 0.5 and r["classes"][WO]["precision"] == 0.5
    assert r["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert r["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert "| without_mask | 0.500 (0.09-0.91) | 1.000 (0.21-1.00) | 0.667 | 1 |" in table(r)  # Wilson 1/2, 1/1
    with pytest.raises(InputError, match="unknown predicted label 'masked'"):
        evaluate_crops([W], ["masked"])
    with pytest.raises(InputError, match="2 true labels but 1"):
        evaluate_crops([W, W], [W])


# ---------------------------------------------------------------- VOC XML

VOC = """<annotation><filename>{name}</filename><size><width>100</width><height>80</height><depth>3</depth></size>
{objects}</annotation>"""
OBJ = "<object><name>{label}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"


def voc(path, objects=(), name="scene.png"):
    path.write_text(VOC.format(name=name, objects="".join(
        OBJ.format(label=label, x1=x1, y1=y1, x2=x2, y2=y2) for label, (x1, y1, x2, y2) in objects)))
    return path


def test_read_voc_clips_and_drops_degenerate_boxes(tmp_path, caplog):
    path = voc(tmp_path / "scene.xml", [(W, (10, 10, 30, 40)), (WO, (-5, 60, 120, 90)),
                                        (INC, (50, 50, 50, 70)), (W, (120, 10, 130, 20))])
    with caplog.at_level(logging.WARNING, logger="maskwatch.benchmarks.accuracy.scoring"):
        a = read_voc_annotations(path)
    assert (a.filename, a.width, a.height, a.labels) == ("scene.png", 100, 80, [W, WO])
    assert a.boxes.dtype == np.float32
    np.testing.assert_array_equal(a.boxes, [[10, 10, 30, 40], [0, 60, 100, 80]])  # clipped to 100x80
    # the zero-width box and the one wholly outside are dropped, with one counted warning
    assert "scene.xml: dropped 2 degenerate boxes" in caplog.text


def test_read_voc_aliases_and_empty(tmp_path):
    a = read_voc_annotations(voc(tmp_path / "a.xml", [("mask", (0, 0, 10, 10))]), aliases={"mask": W})
    assert a.labels == [W]
    b = read_voc_annotations(voc(tmp_path / "b.xml"))
    assert b.boxes.shape == (0, 4) and b.labels == []


@pytest.mark.parametrize("text, message", [
    ("<annotation><size><width>10</width>", "malformed XML"),
    ("<html></html>", "not a PASCAL VOC annotation"),
    ("<annotation><filename>x.png</filename></annotation>", "has no <width>"),
    (VOC.format(name="x.png", objects=OBJ.format(label="mask", x1=0, y1=0, x2=5, y2=5)), "object 1: unknown label 'mask'"),
    (VOC.format(name="x.png", objects="<object><name>with_mask</name></object>"), "object 1 has no <xmin>"),
    (VOC.format(name="x.png", objects=OBJ.format(label=W, x1="a", y1=0, x2=5, y2=5)), r"<xmin> is not a finite number \('a'\)"),
    (VOC.format(name="x.png", objects="<object><bndbox/></object>"), "object 1 has no <name>"),
])
def test_read_voc_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        read_voc_annotations(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_voc_folder(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    for n in (10, 2):
        (tmp_path / "images" / f"s{n}.png").write_bytes(b"")
        voc(tmp_path / "annotations" / f"s{n}.xml", [(W, (0, 0, 10, 10))], name=f"s{n}.png")
    # <filename> names a file that is not there: falls back to the XML's stem
    (tmp_path / "images" / "s3.jpg").write_bytes(b"")
    voc(tmp_path / "annotations" / "s3.xml", name="elsewhere.png")
    found = load_voc_folder(tmp_path)
    assert [a.filename for a in found] == ["s2.png", "s3.jpg", "s10.png"]  # natural order
    # a missing image names the XML
    voc(tmp_path / "annotations" / "s4.xml", name="s4.png")
    with pytest.raises(InputError, match=r"s4\.xml: image .*s4\.png not found"):
        load_voc_folder(tmp_path)


def test_load_voc_folder_without_annotations(tmp_path):
    with pytest.raises(InputError, match=f"{tmp_path}: holds no annotations"):
        load_voc_folder(tmp_path)
    (tmp_path / "annotations").mkdir()
    with pytest.raises(InputError, match="holds no annotations"):
        load_voc_folder(tmp_path)


# ---------------------------------------------------------------- real data


def test_real_annotations_fed_back_score_one(data):
    root = data / "andrewmvd"
    if not (root / "annotations").is_dir():
        pytest.skip(f"{root}/annotations absent")
    truth = load_voc_folder(root)
    assert len(truth) == 652
    found = {a.filename: {"boxes": a.boxes, "scores": np.ones(len(a.boxes)), "labels": a.labels} for a in truth}
    r = evaluate_detections(truth, found)
    for section in ("all", "ignore_small"):
        s = r[section]
        assert s["ap"] == {label: 1.0 for label in CLASSES}, section
        assert (s["map_3class"], s["map_2class"], s["face_ap"], s["face_recall"]) == (1.0, 1.0, 1.0, 1.0)
        assert s["labelling"]["accuracy"] == 1.0
    assert r["all"]["faces"]["positives"] == 3104
    # about a third of the faces are under 16 px; their detections are ignored, not counted
    small = r["all"]["faces"]["positives"] - r["ignore_small"]["faces"]["positives"]
    assert 800 < small < 1200 and r["ignore_small"]["faces"]["ignored"] == small
