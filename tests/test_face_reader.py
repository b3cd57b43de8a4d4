"""The face-reading seam with tiling, on real models: packed street scenes, batching, the video schedule."""
import logging

import numpy as np
import pytest

from maskwatch.edge.classifier import MaskClassifier
from maskwatch.edge.config import load_config
from maskwatch.edge.detector import DetectorConfig, FaceDetector
from maskwatch.edge.errors import ConfigError
from maskwatch.edge.events import Fanout
from maskwatch.edge.face_reader import FaceReader
from maskwatch.edge.gpio import Indicator
from maskwatch.edge.pipeline import Pipeline
from maskwatch.edge.sources import Frame
from maskwatch.edge.tile_schedule import TileSchedule
from maskwatch.edge.tiling import TilingConfig, plan_grid
from maskwatch.edge.tracker import Tracker


@pytest.fixture(scope="module")
def detector():
    return FaceDetector.from_config(DetectorConfig())


@pytest.fixture(scope="module")
def packed(scenes):
    from maskwatch.benchmarks.accuracy.evaluate import voc_split
    from maskwatch.benchmarks.accuracy.packing import pack_scenes

    root = scenes.parent  # the fixture gives the images folder
    return next(pack_scenes(voc_split(root, "val"), scenes, (1920, 1080)))


def found(boxes: np.ndarray, truth: np.ndarray) -> int:
    """Faces of ``truth`` matched by a box at IoU 0.5 or more."""
    if not len(boxes) or not len(truth):
        return 0
    x1 = np.maximum(truth[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(truth[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(truth[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(truth[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = inter / (area(truth)[:, None] + area(boxes)[None, :] - inter)
    return int((iou.max(1) >= 0.5).sum())


def test_packed_scenes_keep_their_pixels_and_boxes(scenes, packed):
    from maskwatch.benchmarks.accuracy.evaluate import voc_split
    from maskwatch.edge.image import read_image

    first = next(a for a in voc_split(scenes.parent, "val") if a.filename == packed.scenes[0])
    scene = read_image(scenes / first.filename)
    assert packed.image.shape == (1080, 1920, 3) and len(packed.scenes) > 4
    assert np.array_equal(packed.image[:scene.shape[0], :scene.shape[1]], scene)  # native pixels, top left
    assert np.allclose(packed.annotation.boxes[:len(first.boxes)], first.boxes)
    assert len(packed.annotation.boxes) == len(packed.annotation.labels) > 20


def test_on_a_camera_sized_frame_the_grid_finds_faces_the_whole_frame_pass_misses(detector, packed, caplog):
    caplog.set_level(logging.INFO, logger="maskwatch.edge.face_reader")
    truth = packed.annotation.boxes
    off = FaceReader(detector, tiling=TilingConfig(mode="off")).detect(packed.image)
    grid = FaceReader(detector, tiling=TilingConfig(mode="grid"))
    faces = grid.detect(packed.image)
    assert found(faces.boxes, truth) >= 2 * found(off.boxes, truth) + 10, (found(faces.boxes, truth), found(off.boxes, truth))
    assert any("1920x1080 frames: grid of" in r.getMessage() and "passes" in r.getMessage() for r in caplog.records)
    # one face, one box: no two kept boxes overlap as much as the NMS threshold
    boxes = faces.boxes
    for i in range(len(boxes)):
        others = np.delete(boxes, i, 0)
        assert found(others, boxes[i:i + 1]) == 0


def test_auto_looks_at_a_frame_no_larger_than_one_tile_in_one_pass(detector, sample_image):
    import cv2

    image = cv2.imread(str(sample_image))[50:320, 50:410]  # 360x270: larger than the 320 px input,
    auto = FaceReader(detector, tiling=TilingConfig(mode="auto"))  # no larger than one 360 px tile
    assert auto.plan(360, 270) is None and auto.plan(512, 512) is not None and auto.plan(1920, 1080) is not None
    whole = detector.detect(image)
    faces = auto.detect(image)
    assert np.array_equal(faces.boxes, whole.boxes) and len(faces) >= 1


def test_a_smallest_face_below_what_the_model_can_find_is_one_line(detector):
    with pytest.raises(ConfigError, match=r"min_face_px 4: .* at least 8$"):  # when the reader is built
        FaceReader(detector, tiling=TilingConfig(mode="grid", min_face_px=4))
    FaceReader(detector, tiling=TilingConfig(mode="off", min_face_px=4))  # not looked at without tiles


@pytest.mark.parametrize("key, value, says", [("detector.tiling.tiles_per_frame", 0, "tiles_per_frame"),
                                              ("detector.tiling.refresh_s", 0, "refresh_s"),
                                              ("detector.tiling.mode", "tiles", "mode")])
def test_impossible_tiling_settings_are_one_line_errors(key, value, says):
    with pytest.raises(ConfigError) as error:
        load_config(None, {key: value})
    assert says in str(error.value) and "\n" not in str(error.value)


def test_tiles_go_through_onnx_as_one_batch_with_the_same_faces(packed):
    onnx = FaceDetector.from_config(DetectorConfig(model="retinaface_mask_mnv2_fp32.onnx", input_size=320))
    assert onnx.batches
    plan = plan_grid(1920, 1080, 320, 20, onnx.min_face_px)
    crops = [packed.image[y1:y2, x1:x2] for x1, y1, x2, y2 in plan.tiles[:4]]
    batched = onnx.detect_many(crops)
    single = [onnx.detect(c) for c in crops]
    assert sum(len(f) for f in single) > 0
    for a, b in zip(batched, single):
        assert len(a) == len(b) and np.allclose(a.boxes, b.boxes, atol=0.5)


def test_the_video_schedule_keeps_its_budget_and_visits_every_tile_in_time():
    plan = plan_grid(1920, 1080, 320, 20, 16)
    schedule = TileSchedule(plan, tiles_per_frame=3, refresh_s=1.0, whole_finds_px=96)
    frame = np.full((1080, 1920, 3), 80, np.uint8)
    looks = {i: [] for i in range(len(plan.tiles))}
    for n in range(60):  # 6 s at 10 frames a second
        now = n / 10
        moving = frame.copy()
        moving[500:560, (n * 30) % 1800:(n * 30) % 1800 + 60] = 255  # something crossing the frame
        windows = schedule.windows(moving, [], now)
        assert len(windows) <= 3
        for w in windows:
            looks[int(np.flatnonzero((plan.tiles == w).all(1))[0])].append(now)
    for times in looks.values():
        assert times and times[0] <= 1.0 and max(np.diff([0.0] + times + [6.0])) <= 1.0 + 1e-9
    assert schedule.longest_gap_s <= 1.0 + 1e-9


def test_a_tracked_small_face_is_looked_at_every_frame_within_the_budget():
    plan = plan_grid(1920, 1080, 320, 20, 16)
    schedule = TileSchedule(plan, tiles_per_frame=2, refresh_s=1.0, whole_finds_px=96)
    frame = np.zeros((1080, 1920, 3), np.uint8)
    track = np.array([900.0, 500.0, 930.0, 536.0])
    for n in range(20):
        windows = schedule.windows(frame, [track], n / 10)
        assert len(windows) <= 3
        assert any(w[0] <= track[0] and w[1] <= track[1] and track[2] <= w[2] and track[3] <= w[3] for w in windows)


def test_a_video_under_a_tile_budget_keeps_one_track_per_face(detector, packed):
    classifier = MaskClassifier()
    tiling = TilingConfig(mode="grid", tiles_per_frame=4, refresh_s=1.0)
    pipeline = Pipeline(FaceReader(detector, classifier, tiling=tiling), Tracker(), Indicator({"backend": "none"}),
                        Fanout([]), "schedule")
    clock = iter(np.arange(0, 100, 0.1))
    pipeline.clock = lambda: float(next(clock))
    for i in range(25):  # 2.5 s of a still scene: every tile looked at twice
        pipeline.process(Frame(packed.image, i, 0.0, "packed"))
    everything = FaceReader(detector, tiling=TilingConfig(mode="grid")).detect(packed.image)
    tracks = list(pipeline.tracker.tracks.values())
    boxes = np.array([t.box for t in tracks], np.float32)
    assert len(tracks) >= 0.8 * len(everything)
    for i in range(len(boxes)):  # no face held by two tracks
        assert found(np.delete(boxes, i, 0), boxes[i:i + 1]) == 0
    pipeline.close()
