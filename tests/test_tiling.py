"""Tile geometry and the merge across tiles, on synthetic sizes and boxes (maskwatch.edge.tiling)."""
import numpy as np
import pytest

from maskwatch.edge.errors import ConfigError
from maskwatch.edge.tiling import MAX_UPSCALE, merge, plan_grid


@pytest.mark.parametrize("width, height", [(1920, 1080), (1280, 720), (3840, 2160), (641, 479), (100, 3000)])
def test_tiles_cover_every_pixel_and_stay_inside_the_frame(width, height):
    plan = plan_grid(width, height, input_size=320, min_face_px=24, model_min_face_px=16)
    covered = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in plan.tiles:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert x2 - x1 <= plan.side and y2 - y1 <= plan.side
        covered[y1:y2, x1:x2] = True
    assert covered.all()


def test_the_tile_count_follows_the_frame_and_the_smallest_face():
    # a 24 px face must reach the network at 16 px: a tile of 320 * 24 / 16 = 480 camera pixels
    plan = plan_grid(1920, 1080, input_size=320, min_face_px=24, model_min_face_px=16)
    assert plan.side == 480 and len(plan.tiles) == 15
    assert plan.describe() == "grid of 5x3 tiles of 480 px (overlap 116 px) + the whole frame: 16 passes"
    # faces the whole-frame pass misses (under 16 * 1920 / 320 = 96 px) fit whole in the overlap
    assert plan.overlap >= 96
    assert len(plan_grid(1920, 1080, 320, min_face_px=48, model_min_face_px=16).tiles) < len(plan.tiles)
    assert len(plan_grid(320, 240, 320, min_face_px=16, model_min_face_px=16).tiles) == 1


def test_a_smallest_face_the_model_cannot_be_made_to_find_is_one_line():
    with pytest.raises(ConfigError, match=f"min_face_px 5: .* at least {16 / MAX_UPSCALE:g}") as err:
        plan_grid(1920, 1080, 320, min_face_px=5, model_min_face_px=16)
    assert "\n" not in str(err.value)


def test_a_face_across_an_inner_tile_edge_gives_one_box():
    plan = plan_grid(1000, 480, input_size=320, min_face_px=24, model_min_face_px=16)
    (left, middle) = plan.tiles[:2]
    assert left[2] > middle[0]  # they overlap
    face = np.array([left[2] - 20, 200, left[2] + 20, 250], np.float32)    # across the left tile's right edge
    cut = face.copy()
    cut[2] = left[2]                                                        # what the left tile sees of it
    boxes = np.stack([cut, face])                                           # the middle tile sees it whole
    keep = merge(boxes, np.array([0.95, 0.9]), np.array([0, 1]), plan.tiles, plan.frame)
    assert keep.tolist() == [1]          # the whole face, although the cut one scored higher


def test_two_faces_side_by_side_in_one_tile_both_stay_and_duplicates_of_the_whole_pass_go():
    plan = plan_grid(1920, 1080, 320, 24, 16)
    a = [100, 100, 140, 150]
    b = [150, 100, 190, 150]
    boxes = np.array([a, b, a], np.float32)
    keep = merge(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, -1]), plan.tiles, plan.frame)   # -1: the whole-frame pass
    assert sorted(keep.tolist()) == [0, 1]
    assert merge(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), plan.tiles, plan.frame).shape == (0,)


def test_a_part_of_a_face_from_another_pass_is_dropped_but_one_tile_keeps_its_own_boxes():
    plan = plan_grid(640, 480, 320, 18, 16)  # two columns of 360 px tiles: the first ends at x = 360
    whole_face = [333.0, 141.0, 386.0, 198.0]
    part = [334.0, 144.0, 357.5, 195.0]  # where the first tile's edge cut it, 2.5 px short of that edge
    keep = merge(np.array([whole_face, part]), np.array([1.0, 0.52]), np.array([-1, 0]), plan.tiles, plan.frame)
    assert keep.tolist() == [0]
    keep = merge(np.array([whole_face, part]), np.array([1.0, 0.52]), np.array([0, 0]), plan.tiles, plan.frame)
    assert sorted(keep.tolist()) == [0, 1]  # the detector's own two boxes in one pass: NMS alone decides
