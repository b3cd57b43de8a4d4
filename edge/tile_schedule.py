"""Which tiles a video frame looks at, under a budget: the video schedule of ``maskwatch run``.

Every frame gets the whole-frame pass (near, large faces) and the grid tile holding each live track
too small for that pass (the overlap makes one tile hold any such face whole). Of the remaining grid tiles at most
``tiles_per_frame`` are looked at: first those that would pass ``refresh_s`` without a look if left
until the next frame (oldest first), then
those with motion since their last look (low-resolution frame differencing, as Frigate does), then
the oldest. The tracker carries faces between looks; the merge and the tracker's matching keep one
track per face whichever window found it.

Example::

    schedule = TileSchedule(plan, tiles_per_frame=4, refresh_s=1.0)
    windows = schedule.windows(frame_bgr, [track.box for track in tracks], now)
    faces = reader.detect(frame_bgr, windows)
"""
from __future__ import annotations

import cv2
import numpy as np

from .tiling import TilePlan

#: Motion is judged on a grey copy this wide; a pixel moved when it changed by more than MOTION_LEVEL.
MOTION_WIDTH = 160
MOTION_LEVEL = 25
#: A tile moved when this share of its pixels did.
MOTION_SHARE = 0.002


class TileSchedule:
    """The windows to look at in each frame of one stream (frames of the plan's size)."""

    def __init__(self, plan: TilePlan, tiles_per_frame: int, refresh_s: float, whole_finds_px: float):
        self.plan, self.tiles_per_frame, self.refresh_s = plan, tiles_per_frame, refresh_s
        self.whole_finds_px = whole_finds_px  #: faces at least this tall are found by the whole-frame pass
        count = len(plan.tiles)
        self.last_look = np.full(count, -np.inf)  #: when each tile was last looked at
        self.moved = np.ones(count, bool)  #: motion since the tile's last look (all, before the first look)
        self.longest_gap_s = 0.0  #: the longest time between two looks at one tile so far
        self._previous: np.ndarray | None = None
        self._last_now: float | None = None
        width, height = plan.frame
        self._scale = MOTION_WIDTH / width
        small = np.round(plan.tiles * self._scale).astype(np.int64)
        small[:, 2:] = np.maximum(small[:, 2:], small[:, :2] + 1)
        self._small_tiles = small

    def _motion(self, frame_bgr: np.ndarray) -> None:
        width, height = self.plan.frame
        size = (MOTION_WIDTH, max(1, round(height * self._scale)))
        grey = cv2.cvtColor(cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        if self._previous is not None:
            changed = (cv2.absdiff(grey, self._previous) > MOTION_LEVEL).astype(np.float32)
            integral = cv2.integral(changed)
            x1, y1, x2, y2 = self._small_tiles.T
            moved = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
            self.moved |= moved / ((x2 - x1) * (y2 - y1)) > MOTION_SHARE
        self._previous = grey

    def windows(self, frame_bgr: np.ndarray, track_boxes, now: float) -> np.ndarray:
        """(M, 4) windows for this frame: the tile holding each live track too small for the whole-frame pass,
        then at most ``tiles_per_frame`` others by priority."""
        self._motion(frame_bgr)
        tiles = self.plan.tiles
        chosen: list[int] = []
        for box in track_boxes:
            box = np.asarray(box, np.float64)
            if min(box[2] - box[0], box[3] - box[1]) >= self.whole_finds_px:
                continue  # the whole-frame pass finds it
            holds = np.flatnonzero((tiles[:, 0] <= box[0]) & (tiles[:, 1] <= box[1])
                                   & (box[2] <= tiles[:, 2]) & (box[3] <= tiles[:, 3]))
            if len(holds):
                centre = (box[:2] + box[2:]) / 2
                distance = np.abs((tiles[holds, :2] + tiles[holds, 2:]) / 2 - centre).sum(1)
                best = int(holds[distance.argmin()])
                if best not in chosen:
                    chosen.append(best)
        age = now - self.last_look
        interval = now - self._last_now if self._last_now is not None else 0.0
        self._last_now = now
        overdue = age + interval > self.refresh_s + 1e-9  # would be late if left for the next frame
        # the rest: overdue first, then moved, each oldest first (lexsort: the last key is the first order)
        order = [int(i) for i in np.lexsort((-age, ~self.moved, ~overdue)) if int(i) not in chosen]
        chosen += order[:self.tiles_per_frame]
        seen = self.last_look[chosen]
        if np.isfinite(seen).any():
            self.longest_gap_s = max(self.longest_gap_s, float((now - seen[np.isfinite(seen)]).max()))
        self.last_look[chosen] = now
        self.moved[chosen] = False
        return tiles[chosen].reshape(-1, 4)

    def overdue_s(self, now: float) -> float:
        """How long the tile waiting longest has waited (a gap still open counts too)."""
        ages = now - self.last_look[np.isfinite(self.last_look)]
        return max(self.longest_gap_s, float(ages.max()) if len(ages) else 0.0)
