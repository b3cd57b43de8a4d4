"""Face crops for the mask classifier: synthetic VOC / crop folders for the rules, real data when present."""
from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.convert.data.faces import CLASSES, load_crop_folders, load_voc_faces
from maskwatch.edge.errors import ConfigError, InputError
from maskwatch.benchmarks.accuracy.splits import split_of

def _scene(width=100, height=80, seed=0):
    """A BGR test image whose every pixel differs, plus a pure-red patch at x 20..40, y 20..50."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 200, (height, width, 3), dtype=np.uint8)
    image[20:50, 20:40] = (0, 0, 255)
    return image


def _write_voc(root: Path, stem: str, objects, image=None, filename=None):
    """``root/annotations/<stem>.xml`` listing ``objects`` [(label, (xmin, ymin, xmax, ymax))], and its png."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    image = _scene() if image is None else image
    if image is not False:
        cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
    boxes = "".join(
        f"<object><name>{label}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for label, b in objects)
    (root / "annotations" / f"{stem}.xml").write_text(
        f"<annotation><filename>{filename or stem + '.png'}</filename>"
        f"<size><width>100</width><height>80</height><depth>3</depth></size>{boxes}</annotation>")


# --- VOC rules on synthetic scenes -------------------------------------------------------


def test_voc_crop_margin_colour_and_split(tmp_path):
    _write_voc(tmp_path, "a", [("with_mask", (20, 20, 40, 50))])
    samples, report = load_voc_faces(tmp_path, margin=0.2)
    (face,) = samples
    assert face.box == (16, 14, 44, 56)  # 0.2 x 20 px wide, 0.2 x 30 px high on each side
    assert face.pixels.shape == (42, 28, 3) and face.pixels.dtype == np.uint8
    assert tuple(face.pixels[21, 14]) == (255, 0, 0)  # RGB: the red patch is red
    assert face.label == "with_mask" and face.source == tmp_path / "images" / "a.png"
    assert face.split == split_of(face.source)
    assert report.kept == Counter(with_mask=1) and report.by_split == Counter({(face.split, "with_mask"): 1})
    sized, _ = load_voc_faces(tmp_path, size=32)
    assert sized[0].pixels.shape == (32, 32, 3)


def test_voc_box_rules(tmp_path):
    _write_voc(tmp_path, "a", [
        ("with_mask", (20, 20, 40, 50)),              # kept
        ("without_mask", (90, 70, 130, 120)),         # runs past the corner: clipped, kept
        ("without_mask", (150, 10, 170, 30)),         # entirely right of the image
        ("with_mask", (30, 30, 30, 45)),              # zero width
        ("mask_weared_incorrect", (5, 5, 10, 40)),    # 5 px wide: under min_face 8
    ])
    samples, report = load_voc_faces(tmp_path, margin=0.1)
    assert [s.label for s in samples] == ["with_mask", "without_mask"]
    assert samples[1].box == (86, 65, 100, 80) and report.clipped == 1
    assert report.skipped == Counter(outside_image=1, degenerate=1, too_small=1)
    assert report.skipped_by_class == Counter(without_mask=1, with_mask=1, mask_weared_incorrect=1)
    _, no_minimum = load_voc_faces(tmp_path, min_face=0)
    assert no_minimum.kept["mask_weared_incorrect"] == 1 and "too_small" not in no_minimum.skipped


def test_unknown_label_raises_or_is_skipped(tmp_path):
    _write_voc(tmp_path, "a", [("with_mask", (20, 20, 40, 50)), ("face_shield", (50, 20, 70, 50))])
    with pytest.raises(InputError, match=r"a\.xml.*'face_shield'"):
        load_voc_faces(tmp_path)
    samples, report = load_voc_faces(tmp_path, on_unknown="skip")
    assert len(samples) == 1 and report.skipped == Counter(unknown_label=1)
    with pytest.raises(ConfigError, match="on_unknown"):
        load_voc_faces(tmp_path, on_unknown="ignore")


def test_malformed_xml(tmp_path):
    _write_voc(tmp_path, "a", [("with_mask", (20, 20, 40, 50))])
    (tmp_path / "annotations" / "b.xml").write_text("<annotation><object><name>with_mask</nam")
    (tmp_path / "annotations" / "c.xml").write_text(
        "<annotation><filename>a.png</filename><object><name>with_mask</name>"
        "<bndbox><xmin>two</xmin></bndbox></object></annotation>")
    with pytest.raises(InputError, match=r"b\.xml"):
        load_voc_faces(tmp_path)
    samples, report = load_voc_faces(tmp_path, strict=False)
    assert len(samples) == 1 and report.skipped_files == Counter(malformed_xml=2)


def test_missing_and_unreadable_images(tmp_path):
    _write_voc(tmp_path, "a", [("with_mask", (20, 20, 40, 50))])
    _write_voc(tmp_path, "b", [("with_mask", (20, 20, 40, 50)), ("without_mask", (50, 20, 70, 50))],
               image=False)
    with pytest.raises(InputError, match=r"b\.xml.*b\.png is missing"):
        load_voc_faces(tmp_path)
    samples, report = load_voc_faces(tmp_path, strict=False)
    assert len(samples) == 1
    assert report.skipped_files == Counter(missing_image=1) and report.skipped == Counter(missing_image=2)
    (tmp_path / "images" / "b.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(InputError, match=r"b\.xml.*unreadable"):
        load_voc_faces(tmp_path)
    _, report = load_voc_faces(tmp_path, strict=False)
    assert report.skipped_files == Counter(unreadable_image=1)


def test_identical_scenes_share_a_split(tmp_path):
    for stem in ("a", "b"):
        _write_voc(tmp_path, stem, [("with_mask", (20, 20, 40, 50)), ("without_mask", (50, 20, 70, 50))])
    samples, _ = load_voc_faces(tmp_path)
    assert len(samples) == 4 and len({s.split for s in samples}) == 1


# --- crop folders ------------------------------------------------------------------------


def _write_crops(root: Path, folder: str, count: int, seed=0):
    (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(root / folder / f"{i}.jpg"), _scene(40, 50, seed=seed + i))


def test_crop_folders_aliases_and_unreadable(tmp_path):
    _write_crops(tmp_path, "correct_mask", 3)
    _write_crops(tmp_path, "incorrect_mask", 2, seed=10)
    (tmp_path / "incorrect_mask" / "broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    (tmp_path / "incorrect_mask" / "notes.txt").write_text("not an image: ignored")
    samples, report = load_crop_folders(tmp_path, size=24)
    assert report.kept == Counter(with_mask=3, mask_weared_incorrect=2)
    assert report.skipped == Counter(unreadable_image=1)
    assert report.skipped_by_class == Counter(mask_weared_incorrect=1)
    assert all(s.pixels.shape == (24, 24, 3) and s.box is None for s in samples)
    assert all(s.split == split_of(s.source) for s in samples)
    native, _ = load_crop_folders(tmp_path)
    assert native[0].pixels.shape == (50, 40, 3)


def test_crop_folder_errors(tmp_path):
    _write_crops(tmp_path, "with_mask", 1)
    (tmp_path / "without_mask").mkdir()
    (tmp_path / "without_mask" / ".DS_Store").write_bytes(b"")
    with pytest.raises(InputError, match=r"without_mask: class folder holds no images"):
        load_crop_folders(tmp_path)
    _write_crops(tmp_path, "without_mask", 1)
    _write_crops(tmp_path, "hats", 2)
    with pytest.raises(InputError, match=r"hats.*not a known class"):
        load_crop_folders(tmp_path)
    samples, report = load_crop_folders(tmp_path, on_unknown="skip")
    assert len(samples) == 2 and report.skipped == Counter(unknown_label=2)
    with pytest.raises(InputError, match="no class subfolders"):
        load_crop_folders(tmp_path / "absent")


def test_reports_merge(tmp_path):
    _write_voc(tmp_path / "voc", "a", [("with_mask", (20, 20, 40, 50)), ("with_mask", (5, 5, 7, 9))])
    _write_crops(tmp_path / "crops", "without_mask", 2)
    merged = load_voc_faces(tmp_path / "voc")[1].merge(load_crop_folders(tmp_path / "crops")[1])
    assert merged.kept == Counter(with_mask=1, without_mask=2) and merged.skipped == Counter(too_small=1)
    assert "kept 3" in str(merged)


# --- real data: conftest's ``data`` fixture ($MASKWATCH_DATA, else ../shared/data; skips when absent)


def _real(data: Path, *parts: str) -> Path:
    path = data.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"{path} absent: that data set is needed")
    return path


def test_andrewmvd_every_box_is_kept_or_skipped_and_scenes_stay_whole(data):
    root = _real(data, "andrewmvd")
    samples, report = load_voc_faces(root)
    listed = Counter(o.findtext("name") for xml in (root / "annotations").glob("*.xml")
                     for o in ET.parse(xml).getroot().iter("object"))
    assert set(listed) <= set(CLASSES)
    assert report.kept + report.skipped_by_class == listed
    assert set(report.skipped) <= {"too_small", "degenerate", "outside_image"}
    assert report.kept["mask_weared_incorrect"] > 50 and report.clipped > 0
    for sample in samples:
        x0, y0, x1, y1 = sample.box
        assert sample.pixels.shape == (y1 - y0, x1 - x0, 3) and min(y1 - y0, x1 - x0) >= 8
    sides = defaultdict(set)
    for sample in samples:
        sides[sample.source.name].add(sample.split)
    assert all(len(s) == 1 for s in sides.values())
    assert {split for split, _ in report.by_split} == {"train", "val"}
    pairs = [[f"maksssksksss{n}.png" for n in pair]  # byte-identical, labelled differently
             for pair in ((13, 737), (146, 219), (410, 428), (653, 775), (656, 690))]
    pairs = [pair for pair in pairs if all(name in sides for name in pair)]
    assert pairs and all(sides[a] == sides[b] for a, b in pairs)


@pytest.mark.parametrize("folder, classes", [
    ("chandrikadeb7", {"with_mask", "without_mask"}),
    ("maskedfacenet", {"with_mask", "mask_weared_incorrect"}),  # non-commercial: research only
])
def test_crop_sets_load_with_duplicates_on_one_side(data, folder, classes):
    root = _real(data, "crops", folder)
    samples, report = load_crop_folders(root, size=64)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert set(report.kept) == classes and len(samples) + sum(report.skipped.values()) == len(files)
    assert all(s.pixels.shape == (64, 64, 3) for s in samples)
    by_content = defaultdict(set)
    for sample in samples:
        by_content[hashlib.sha1(sample.source.read_bytes()).hexdigest()].add(sample.split)
    assert all(len(s) == 1 for s in by_content.values())
    assert {split for split, _ in report.by_split} == {"train", "val"}


def test_voc_faces_cut_from_detector_boxes_like_the_runtime(data):
    from maskwatch.convert.data.faces import load_voc_detector_faces
    from maskwatch.edge.classifier import MaskClassifier
    from maskwatch.edge.detector import FaceDetector
    from maskwatch.benchmarks.accuracy.voc import load_voc_folder

    root = data / "andrewmvd"
    annotations = load_voc_folder(root)[:8]
    samples, report = load_voc_detector_faces(root, FaceDetector("retinaface_mnv2_640_int8.tflite"), annotations=annotations)
    faces = sum(len(a.labels) for a in annotations)
    assert len(samples) + report.skipped["not_detected"] == faces and len(samples) > faces // 2
    assert all(s.label in ("with_mask", "without_mask", "mask_weared_incorrect") and s.pixels.ndim == 3 for s in samples)
    assert MaskClassifier().margin == 0.2  # the margin these crops use is the runtime's


def test_the_val_split_is_fold_zero_of_five(tmp_path):
    from maskwatch.benchmarks.accuracy.splits import FOLDS, fold_of

    paths = []
    for i in range(200):
        paths.append(tmp_path / f"{i}.bin")
        paths[-1].write_bytes(str(i).encode())
    folds = [fold_of(p) for p in paths]
    assert set(folds) == set(range(FOLDS))
    assert all((split_of(p) == "val") == (f == 0) for p, f in zip(paths, folds))
    assert all(split_of(p, val_fold=f) == "val" for p, f in zip(paths, folds))
