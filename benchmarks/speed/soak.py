"""Soak: the whole pipeline over many frames, recording memory and open file descriptors over time.

Runs ``litert-int8-320`` with mock GPIO and a JSON Lines event log on the
five-face frame and the sample clip in turn (faces come and go, so tracks
start and end), samples RSS and the number of open descriptors every
``every`` frames, and reports their growth after warm-up: the first tenth, and
at least ``WARM_UP_FRAMES`` (each scene once, so every code path has run).
Growth past ``LIMIT_PERCENT`` in either fails the soak (``within_limit``
false; ``maskwatch bench --soak`` then exits 1).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

#: Largest growth of RSS or open descriptors after warm-up that a soak accepts (the README states it).
LIMIT_PERCENT = 5.0
#: Frames in each scene before switching to the other; warm-up covers one of each.
SCENE_FRAMES = 300
WARM_UP_FRAMES = 2 * SCENE_FRAMES


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def soak(frames: int = 20_000, every: int = 500) -> dict:
    """Run the soak; figures as a dict (``within_limit``: both growths at most LIMIT_PERCENT)."""
    if frames < 2 * WARM_UP_FRAMES:
        raise ValueError(f"a soak needs at least {2 * WARM_UP_FRAMES} frames (warm-up is {WARM_UP_FRAMES})")
    from maskwatch.edge.app import build_pipeline
    from maskwatch.edge.config import load_config
    from maskwatch.edge.sources.sample import SampleClip
    from maskwatch.edge.sources import Frame

    from maskwatch.benchmarks.speed.bench import five_face_frame

    crowd = five_face_frame()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(None, {"signal.backend": "mock", "device_id": "soak", "events.summary_interval_s": 5,
                                    "events.jsonl": {"path": str(Path(tmp) / "events.jsonl"), "max_bytes": 200_000}})
        samples, started = [], time.perf_counter()
        with build_pipeline(config) as pipeline:
            clip = SampleClip(frames=90)
            for index in range(frames):
                if (index // SCENE_FRAMES) % 2:  # alternate: the moving sample face, then five still faces
                    frame = clip.read()
                    if frame is None:
                        clip = SampleClip(frames=90)
                        frame = clip.read()
                    frame = Frame(frame.image, index, frame.timestamp, "sample")
                else:
                    frame = Frame(crowd, index, time.monotonic(), "five faces")
                pipeline.process(frame)
                if index % every == 0 or index == frames - 1:
                    samples.append({"frame": index, "seconds": round(time.perf_counter() - started, 1),
                                    "rss_mb": round(rss_mb(), 1), "open_fds": open_fds()})
            events = dict(pipeline.stats.events)
    warm = next(s for s in samples if s["frame"] >= max(frames // 10, WARM_UP_FRAMES))
    last = samples[-1]
    growth = {key: round(100.0 * (last[key] - warm[key]) / warm[key], 2) for key in ("rss_mb", "open_fds")}
    return {"frames": frames, "fps": round(frames / last["seconds"], 1) if last["seconds"] else None,
            "warm_up_sample": warm, "rss_growth_percent": growth["rss_mb"], "fd_growth_percent": growth["open_fds"],
            "limit_percent": LIMIT_PERCENT, "within_limit": max(growth.values()) <= LIMIT_PERCENT,
            "events": events, "samples": samples}


def markdown(result: dict) -> str:
    return (f"Soak: {result['frames']} frames at {result['fps']} fps; after warm-up (frame "
            f"{result['warm_up_sample']['frame']}), RSS grew {result['rss_growth_percent']} % and open file "
            f"descriptors {result['fd_growth_percent']} % (limit: {result['limit_percent']:g} %: "
            f"{'within' if result['within_limit'] else 'OVER'}). Events: {result['events']}.\n")
