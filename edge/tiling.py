"""Where to look in a frame larger than the detector's input: tiles and their merge, as plain functions.

A frame letterboxed whole into the network shrinks every face by ``input / longest side``; a face
must reach the network at ``model_min_face_px`` or more (the smallest anchor of the model) to be
found. The user says the smallest face, in camera pixels, that must be found (``min_face_px``);
from it follow the tile side (a face of ``min_face_px`` in a tile of that side reaches the network at
``model_min_face_px``) and the overlap (a face too small for the whole-frame pass must fit whole in
some tile). Faces the whole-frame pass finds need no tile.

The ``[detector.tiling]`` config section (:class:`TilingConfig`) says when to tile: ``off`` (one
whole-frame pass), ``grid`` (the whole frame plus every tile) or ``auto`` (tiles only when the frame
is larger than one tile, so a face of ``min_face_px`` would shrink below what the model finds).

Example::

    plan = plan_grid(1920, 1080, input_size=320, min_face_px=24, model_min_face_px=16)
    print(plan.describe())  # grid of 5x3 tiles of 480 px (overlap 116 px) + the whole frame: 16 passes
    keep = merge(boxes, scores, tile_of_box, plan.tiles, plan.frame)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import ConfigError
from .postprocess import nms

TILING_MODES = ("off", "grid", "auto")
#: The smallest face, in camera pixels, that tiling looks for unless told: the 320 px model then looks at
#: 360 px tiles (33 passes on a 1080p frame). docs/camera-resolution.md has the measured choice.
MIN_FACE_PX = 18.0

#: The most a tile is enlarged on its way into the network: past 2x, upscaling adds no detail to find.
MAX_UPSCALE = 2.0
#: A box within this many pixels of a tile's inner edge is cut by it (the face goes on in the next tile).
EDGE_PX = 2.0
#: A box from one pass lying this much inside a better box from another pass is part of that face.
CONTAINED = 0.6


class TilingConfig(BaseModel):
    """The ``[detector.tiling]`` config section: when and how closely the detector looks at a large frame."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mode: Literal[TILING_MODES] = Field("auto", description="off: the whole frame in one pass; grid: the whole "
                                        "frame plus overlapping tiles; auto: tiles only for frames larger than one tile")
    min_face_px: float = Field(MIN_FACE_PX, gt=0, le=4096, description="smallest face, in camera pixels, that must be "
                               "found; the tile size follows from it and from the smallest face the model finds")
    tiles_per_frame: int | None = Field(4, ge=1, le=1024, description="video (run): most grid tiles looked at in "
                                        "one frame besides the whole frame and the tiles holding small tracked faces "
                                        "(the tile count or more: every tile, every frame)")
    refresh_s: float = Field(1.0, gt=0, le=3600, description="video (run) with tiles_per_frame: every tile is looked "
                             "at least this often; tiles with motion since their last look go first")


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one frame size (x1, y1, x2, y2 in frame pixels, int), their side and overlap."""

    tiles: np.ndarray
    side: int
    overlap: int
    frame: tuple[int, int]  #: (width, height)

    def describe(self) -> str:
        columns = len(np.unique(self.tiles[:, 0]))
        rows = len(np.unique(self.tiles[:, 1]))
        return (f"grid of {columns}x{rows} tiles of {self.side} px (overlap {self.overlap} px) + the whole frame: "
                f"{len(self.tiles) + 1} passes")


def _starts(length: int, side: int, overlap: int) -> list[int]:
    """Tile starts along one axis: every ``side - overlap``, the last flush with the end."""
    if length <= side:
        return [0]
    count = math.ceil((length - overlap) / (side - overlap))
    step = (length - side) / (count - 1)
    return [round(i * step) for i in range(count)]


def whole_pass_finds(frame_width: int, frame_height: int, input_size: int, model_min_face_px: float) -> float:
    """The smallest face, in frame pixels, a pass over the whole frame letterboxed into ``input_size`` finds."""
    return model_min_face_px * max(frame_width, frame_height) / input_size


def plan_grid(frame_width: int, frame_height: int, input_size: int, min_face_px: float,
              model_min_face_px: float) -> TilePlan:
    """Tiles that bring a face of ``min_face_px`` camera pixels to ``model_min_face_px`` at the network's
    ``input_size``, overlapping by the largest face the whole-frame pass would still miss."""
    if frame_width < 1 or frame_height < 1:
        raise ConfigError(f"frame size {frame_width}x{frame_height}: must be at least 1x1")
    floor = model_min_face_px / MAX_UPSCALE
    if min_face_px < floor:
        raise ConfigError(f"min_face_px {min_face_px:g}: the model finds faces of {model_min_face_px:g} px at its "
                          f"input and tiles are enlarged at most {MAX_UPSCALE:g}x, so at least {floor:g}")
    side = max(1, int(input_size * min_face_px / model_min_face_px))
    whole_finds = whole_pass_finds(frame_width, frame_height, input_size, model_min_face_px)
    overlap = min(side // 2, math.ceil(whole_finds * 1.2))
    xs = _starts(frame_width, side, overlap)
    ys = _starts(frame_height, side, overlap)
    tiles = np.array([(x, y, min(x + side, frame_width), min(y + side, frame_height)) for y in ys for x in xs],
                     np.int64)
    return TilePlan(tiles, side, overlap, (frame_width, frame_height))


def cut_by_tile(boxes: np.ndarray, tile_of_box: np.ndarray, tiles: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    """(N,) bool: the box touches an edge of its tile that is not the frame's (the face may go on past it).
    ``tile_of_box`` is -1 for a box of the whole-frame pass, never cut."""
    cut = np.zeros(len(boxes), bool)
    inner = tile_of_box >= 0
    if not inner.any():
        return cut
    t = tiles[tile_of_box[inner]].astype(np.float64)
    b = boxes[inner].astype(np.float64)
    width, height = frame
    cut[inner] = (((b[:, 0] - t[:, 0] <= EDGE_PX) & (t[:, 0] > 0)) | ((t[:, 2] - b[:, 2] <= EDGE_PX) & (t[:, 2] < width))
                  | ((b[:, 1] - t[:, 1] <= EDGE_PX) & (t[:, 1] > 0)) | ((t[:, 3] - b[:, 3] <= EDGE_PX) & (t[:, 3] < height)))
    return cut


def merge(boxes: np.ndarray, scores: np.ndarray, tile_of_box: np.ndarray, tiles: np.ndarray, frame: tuple[int, int],
          iou_threshold: float = 0.4) -> np.ndarray:
    """Indices of the detections to keep, best first, from boxes of every pass in frame pixels;
    ``tile_of_box`` indexes ``tiles`` (the windows looked at), -1 for the whole-frame pass.

    A box cut by an inner tile edge is dropped when a box not cut (from another tile or the whole
    frame) covers half of it or more: that one holds the whole face. Then NMS across all passes,
    and last a box lying :data:`CONTAINED` or more inside a better one from another pass is dropped
    (a part of a face, seen where a tile edge cut it), so one face gives one box.
    """
    if not len(boxes):
        return np.zeros(0, np.int64)
    boxes = np.asarray(boxes, np.float32)
    tile_of_box = np.asarray(tile_of_box)
    cut = cut_by_tile(boxes, tile_of_box, np.asarray(tiles), frame)
    whole = boxes[~cut]
    keep = np.ones(len(boxes), bool)
    for i in np.flatnonzero(cut):
        if len(whole) and float(_inside(boxes[i], whole).max()) >= 0.5:
            keep[i] = False
    candidates = np.flatnonzero(keep)
    ranked = candidates[nms(boxes[candidates], np.asarray(scores, np.float32)[candidates], iou_threshold)]
    kept: list[int] = []
    for i in ranked:
        better = [j for j in kept if tile_of_box[j] != tile_of_box[i]]
        if not better or float(_inside(boxes[i], boxes[better]).max()) < CONTAINED:
            kept.append(int(i))
    return np.array(kept, np.int64)


def _inside(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The share of ``box``'s area inside each of ``others`` (M, 4)."""
    inter_w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    return inter_w * inter_h / max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-9)
