"""``maskwatch bench``: latency per stage and frames per second, per backend, precision and input size.

Each variant runs in its own process (so its peak RSS is its own): warm-up,
then repeats of every stage on the same frame: decode (JPEG), letterbox,
detect (the model alone), post-process (anchors, decoding, NMS), classify
(one face), track, and the whole frame through the pipeline (tracking reuses
labels between classifications). Frames per second are measured over a clip,
capture running in its own thread. Results: JSON, a markdown table and a PNG.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from maskwatch.benchmarks.variants import VARIANTS
from maskwatch.edge.tiling import MIN_FACE_PX

STAGES = ("decode", "letterbox", "detect", "postprocess", "classify_face", "track", "frame")
FACES = 5


@dataclass
class BenchConfig:
    warmup: int = 10
    repeats: int = 100
    clip_frames: int = 300
    threads: int | None = os.cpu_count()
    video: str | None = None
    frame_size: list[int] | None = None  #: [width, height]: also measure tiling on frames of this size
    tiling: list[str] = field(default_factory=lambda: ["off", "grid"])
    min_face_px: float = MIN_FACE_PX
    tiles_per_frame: int | None = None  #: the video schedule's budget (default: every tile once a second at 10 fps)
    voc: str | None = None  #: scenes packed at native pixels make the large frame (default: a synthetic one)


def five_face_frame() -> np.ndarray:
    """A 640x480 BGR frame holding five copies of the shipped sample face (no data needed)."""
    from maskwatch.edge.sample import sample_image

    photo = cv2.imread(str(sample_image()))
    face = cv2.resize(photo[30:210, 150:300], (100, 120), interpolation=cv2.INTER_AREA)  # the face, with margin
    frame = np.full((480, 640, 3), 80, np.uint8)
    for x, y in ((20, 40), (250, 30), (480, 50), (120, 300), (380, 290)):
        frame[y:y + 120, x:x + 100] = face
    return frame


def summary(samples: list[float]) -> dict:
    ms = np.sort(np.asarray(samples)) * 1000.0
    return {"median_ms": round(float(np.median(ms)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "n": int(ms.size)}


def timed(function, config: BenchConfig) -> dict:
    for _ in range(config.warmup):
        function()
    samples = []
    for _ in range(config.repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return summary(samples)


def small_faces_frame(width: int, height: int) -> np.ndarray:
    """A BGR frame of a camera's size holding the sample face at distant sizes (16 to 64 px tall) in a grid."""
    from maskwatch.edge.sample import sample_image

    photo = cv2.imread(str(sample_image()))
    face = photo[30:210, 150:300]
    frame = np.full((height, width, 3), 80, np.uint8)
    sizes = (16, 20, 24, 32, 40, 48, 64)
    step = 110
    for i, y in enumerate(range(20, height - 80, step)):
        for j, x in enumerate(range(20, width - 80, step)):
            size = sizes[(i + j) % len(sizes)]
            small = cv2.resize(face, (round(size * 150 / 180), size), interpolation=cv2.INTER_AREA)
            frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame


def large_frame(config: BenchConfig) -> tuple[np.ndarray, str]:
    """The large frame to measure on and what it is: the first of the ``voc`` val scenes packed at their
    native pixels, or :func:`small_faces_frame`."""
    width, height = config.frame_size
    if config.voc:
        from maskwatch.benchmarks.accuracy.evaluate import voc_split
        from maskwatch.benchmarks.accuracy.packing import pack_scenes

        packed = next(pack_scenes(voc_split(Path(config.voc), "val"), Path(config.voc) / "images", (width, height)))
        return packed.image, f"{len(packed.scenes)} {Path(config.voc).name} val scenes packed at native pixels"
    return small_faces_frame(width, height), "the sample face at 16-64 px in a grid"


def measure_tiling(detector, classifier, config: BenchConfig) -> dict:
    """Tiles per frame, per-tile and per-frame latency, frame rate and faces found on a large frame, for each
    tiling mode; then the video schedule (a tile budget per frame) over ``clip_frames`` frames."""
    from maskwatch.edge.events import Fanout
    from maskwatch.edge.face_reader import FaceReader
    from maskwatch.edge.gpio import Indicator
    from maskwatch.edge.pipeline import Pipeline
    from maskwatch.edge.sources import Frame
    from maskwatch.edge.tiling import TilingConfig
    from maskwatch.edge.tracker import Tracker

    frame, what = large_frame(config)
    height, width = frame.shape[:2]
    few = BenchConfig(warmup=2, repeats=max(5, config.repeats // 10))
    modes = {}
    for mode in config.tiling:
        reader = FaceReader(detector, classifier, tiling=TilingConfig(mode=mode, min_face_px=config.min_face_px))
        plan = reader.plan(width, height)
        tiles = plan.tiles if plan is not None else np.zeros((0, 4), np.int64)
        crops = [frame[y1:y2, x1:x2] for x1, y1, x2, y2 in tiles]
        result = {"passes": 1 + len(tiles), "plan": plan.describe() if plan else "the whole frame only",
                  "faces": len(reader.detect(frame)),
                  "detect_frame": timed(lambda: reader.detect(frame), few),
                  "read_frame": timed(lambda: reader.read(frame), few)}
        if crops:
            result["tile_loop"] = timed(lambda: [detector.detect(c) for c in crops], few)
            result["tile_loop"]["per_tile_ms"] = round(result["tile_loop"]["median_ms"] / len(crops), 3)
            if detector.batches:
                result["tile_batch"] = timed(lambda: detector.detect_many(crops), few)
                result["tile_batch"]["per_tile_ms"] = round(result["tile_batch"]["median_ms"] / len(crops), 3)
        result["fps"] = round(1000.0 / result["read_frame"]["median_ms"], 2)
        modes[mode] = result
    grid = FaceReader(detector, classifier, tiling=TilingConfig(mode="grid", min_face_px=config.min_face_px))
    plan = grid.plan(width, height)
    budget = config.tiles_per_frame or max(1, -(-len(plan.tiles) // 10))
    reader = FaceReader(detector, classifier, tiling=TilingConfig(mode="grid", min_face_px=config.min_face_px,
                                                                  tiles_per_frame=budget, refresh_s=1.0))
    pipeline = Pipeline(reader, Tracker(), Indicator({"backend": "none"}), Fanout([]), "bench")
    start = time.perf_counter()
    for i in range(config.clip_frames):
        pipeline.process(Frame(frame, i, time.monotonic(), "large frame"))
    seconds = time.perf_counter() - start
    schedule = next(iter(pipeline._schedules.values()))
    video = {"tiles_per_frame": budget, "refresh_s": 1.0, "frames": config.clip_frames,
             "fps": round(config.clip_frames / seconds, 2), "faces_per_frame": round(pipeline.stats.faces / config.clip_frames, 2),
             "longest_gap_s": round(schedule.overdue_s(time.monotonic()), 3)}
    pipeline.close()
    return {"frame_size": [width, height], "frame": what, "min_face_px": config.min_face_px, "modes": modes,
            "video_schedule": video}


def measure(variant: str, config: BenchConfig) -> dict:
    """Every stage of one variant, in this process."""
    from maskwatch.edge.classifier import ClassifierConfig, MaskClassifier
    from maskwatch.edge.detector import DetectorConfig, FaceDetector
    from maskwatch.edge.events import Fanout
    from maskwatch.edge.face_reader import FaceReader
    from maskwatch.edge.pipeline import Pipeline
    from maskwatch.edge.gpio import Indicator
    from maskwatch.edge.sources import Frame
    from maskwatch.edge.tiling import TilingConfig
    from maskwatch.edge.tracker import Tracker

    detector_name, classifier_name, size = VARIANTS[variant]
    detector = FaceDetector.from_config(DetectorConfig(model=detector_name, threads=config.threads, input_size=size))
    classifier = MaskClassifier.from_config(ClassifierConfig(model=classifier_name, threads=config.threads))
    frame = five_face_frame()
    jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    tensor, box = detector.prepare(frame)
    heads = detector.raw(tensor)
    faces = detector.detect(frame)
    crop = cv2.cvtColor(frame[40:160, 20:140], cv2.COLOR_BGR2RGB)
    tracker = Tracker()
    stages = {
        "decode": timed(lambda: cv2.imdecode(jpeg, cv2.IMREAD_COLOR), config),
        "letterbox": timed(lambda: detector.prepare(frame), config),
        "detect": timed(lambda: detector.runtime.run(tensor), config),
        "postprocess": timed(lambda: detector.decoder(heads["bbox"], heads["landmark"], heads["class"],
                                                      box.input_height, box.input_width), config),
        "classify_face": timed(lambda: classifier.classify_crops([crop]), config),
        "track": timed(lambda: tracker.step(faces.boxes, faces.scores), config),
    }
    whole = FaceReader(detector, classifier, tiling=TilingConfig(mode="off"))  # the stages: one pass a frame
    pipeline = Pipeline(whole, Tracker(), Indicator({"backend": "none"}), Fanout([]), "bench")
    counter = iter(range(10 ** 9))
    stages["frame"] = timed(lambda: pipeline.process(Frame(frame, next(counter), time.monotonic(), "bench")), config)
    pipeline.close()
    clip = _clip(detector, classifier, frame, config)
    result = {"variant": variant, "detector": detector_name, "classifier": classifier_name,
              "detector_input": list(box.__dict__.values())[2:], "faces_in_frame": len(faces),
              "stages": stages, "clip": clip}
    if config.frame_size:
        result["large_frame"] = measure_tiling(detector, classifier, config)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's own peak resident set (VmHWM). ``getrusage``'s ru_maxrss is not used: Linux carries
    it across exec, so a child started by a large parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _clip(detector, classifier, frame, config: BenchConfig) -> dict:
    """Frames per second over a clip (``config.video``, capture in its own thread, or the five-face frame
    repeated), tiling off; with a video and ``--frame-size``, faces found per frame in each of ``config.tiling``
    as ``run`` does it (grid and auto under the video schedule's tile budget)."""
    from maskwatch.edge.events import Fanout
    from maskwatch.edge.face_reader import FaceReader
    from maskwatch.edge.gpio import Indicator
    from maskwatch.edge.pipeline import Pipeline
    from maskwatch.edge.sources import Frame, Threaded, open_source
    from maskwatch.edge.tiling import TilingConfig
    from maskwatch.edge.tracker import Tracker

    result = {}
    for mode in (config.tiling if config.video and config.frame_size else ["off"]):
        budget = {"tiles_per_frame": config.tiles_per_frame} if config.tiles_per_frame else {}
        reader = FaceReader(detector, classifier, tiling=TilingConfig(mode=mode, min_face_px=config.min_face_px,
                                                                      **budget))
        pipeline = Pipeline(reader, Tracker(), Indicator({"backend": "none"}), Fanout([]), "bench")
        start = time.perf_counter()
        if config.video:
            with Threaded(open_source(config.video)) as threaded:
                stats = pipeline.run(threaded, max_frames=config.clip_frames)
        else:
            for i in range(config.clip_frames):
                pipeline.process(Frame(frame, 10 ** 6 + i, time.monotonic(), "five faces"))
            stats = pipeline.stats
        seconds = time.perf_counter() - start
        pipeline.close()
        figures = {"source": config.video or "five-face frame", "frames": stats.frames,
                   "fps": round(stats.frames / seconds, 2), "faces_per_frame": round(stats.faces / max(stats.frames, 1), 2)}
        if mode == "off":
            result.update(figures)
        else:
            result[f"tiling_{mode}"] = figures
    return result


#: /proc/cpuinfo flags that decide int8 and float speed, in the words the results use.
ISA_FLAGS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
             "amx_int8": "AMX-INT8", "asimd": "NEON", "asimddp": "NEON dot product", "i8mm": "I8MM", "sve": "SVE"}


def instruction_sets(cpuinfo: str | None = None) -> list[str]:
    """The speed-deciding instruction sets this CPU reports (x86 ``flags``, Arm ``Features``)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    line = next((l for l in cpuinfo.splitlines() if l.split(":")[0].strip() in ("flags", "Features")), "")
    present = set(line.partition(":")[2].split())
    return [name for flag, name in ISA_FLAGS.items() if flag in present]


#: Arm "CPU part" numbers of the cores on the boards maskwatch targets (ARM's own implementer, 0x41)
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xd42": "Cortex-A78AE",
             "0xd4b": "Cortex-A78C"}


def cpu_name(cpuinfo: str | None = None, board: str | None = None) -> str:
    """The CPU's name: x86 ``model name``; on Arm the core from ``CPU part`` and the board from the device
    tree (Arm cpuinfo has no model name), e.g. ``Cortex-A76 (Raspberry Pi 5 Model B Rev 1.0)``."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if fields.get("model name"):
        return fields["model name"]
    if board is None:
        model = Path("/proc/device-tree/model")
        board = model.read_bytes().rstrip(b"\0").decode(errors="replace") if model.exists() else ""
    part = fields.get("CPU part", "")
    core = ARM_PARTS.get(part, f"Arm core {part}" if part else platform.processor() or platform.machine())
    return f"{core} ({board})" if board else core


def environment() -> dict:
    cpu = cpu_name()
    versions = {}
    for name in ("maskwatch", "numpy", "opencv-python-headless", "ai-edge-litert", "tflite-runtime", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except OSError:
        commit = None
    return {"cpu": cpu, "isa": instruction_sets(), "cores": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(),
            "versions": versions, "commit": commit, "date": time.strftime("%Y-%m-%d")}


def run_variants(variants: list[str], config: BenchConfig) -> dict:
    """Each variant in a fresh process; returns the whole results document."""
    results = []
    for variant in variants:
        command = [sys.executable, "-m", "maskwatch.benchmarks.speed.bench", variant, json.dumps(config.__dict__)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            results.append({"variant": variant, "error": last})
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"environment": environment(), "config": config.__dict__, "faces": FACES, "results": results}


def markdown(document: dict) -> str:
    env = document["environment"]
    lines = [f"{env['cpu']}, {env['cores']} cores, {env['machine']}, Python {env['python']}, commit {env['commit']}, {env['date']}",
             "", f"Instruction sets: {', '.join(env.get('isa') or ['not reported'])}. Figures hold for this machine "
             "only: compare speeds as ratios within one run.", "", "Median latency in ms (p90 in brackets); a 640x480 frame with five faces.", "",
             "| variant | " + " | ".join(STAGES) + " | clip fps | peak RSS MB |", "|---|" + "---|" * (len(STAGES) + 2)]
    for r in document["results"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error']} |")
            continue
        cells = [f"{r['stages'][s]['median_ms']:.2f} ({r['stages'][s]['p90_ms']:.2f})" for s in STAGES]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + f" | {r['clip']['fps']:.1f} | {r['peak_rss_mb']:.0f} |")
    lines += large_frame_markdown(document)
    return "\n".join(lines) + "\n"


def large_frame_markdown(document: dict) -> list[str]:
    """The tiling tables, when the run measured a large frame (``--frame-size``)."""
    rows = [r for r in document["results"] if "large_frame" in r]
    if not rows:
        return []
    first = rows[0]["large_frame"]
    lines = ["", f"Large frame {first['frame_size'][0]}x{first['frame_size'][1]}: {first['frame']}; faces from "
             f"{first['min_face_px']:g} px. Median ms per frame (p90); per tile: the tiles one by one, and as one batch "
             "where the runtime takes one.", "",
             "| variant | tiling | passes | faces | detect frame | detect + classify frame | fps | per tile (loop) | "
             "per tile (batch) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for mode, m in r["large_frame"]["modes"].items():
            loop = f"{m['tile_loop']['per_tile_ms']:.2f}" if "tile_loop" in m else "-"
            batch = f"{m['tile_batch']['per_tile_ms']:.2f}" if "tile_batch" in m else "-"
            lines.append(f"| {r['variant']} | {mode} | {m['passes']} | {m['faces']} | {m['detect_frame']['median_ms']:.1f} "
                         f"({m['detect_frame']['p90_ms']:.1f}) | {m['read_frame']['median_ms']:.1f} "
                         f"({m['read_frame']['p90_ms']:.1f}) | {m['fps']:.1f} | {loop} | {batch} |")
    lines += ["", "Video schedule (run): the whole frame and regions around tracks every frame, at most N grid tiles "
              "a frame, every tile at least once a second.", "",
              "| variant | N tiles a frame | frames | fps | faces a frame | longest gap between looks at a tile (s) |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        v = r["large_frame"]["video_schedule"]
        lines.append(f"| {r['variant']} | {v['tiles_per_frame']} | {v['frames']} | {v['fps']:.1f} | "
                     f"{v['faces_per_frame']:.1f} | {v['longest_gap_s']:.2f} |")
    clips = [r for r in document["results"] if any(k.startswith("tiling_") for k in r.get("clip", {}))]
    if clips:
        lines += ["", f"Video {clips[0]['clip']['source']}: faces found per frame and fps by tiling mode, as `run` "
                  "does it (the video schedule's tile budget).", "",
                  "| variant | tiling | faces a frame | fps |", "|---|---|---|---|"]
        for r in clips:
            lines.append(f"| {r['variant']} | off | {r['clip']['faces_per_frame']:.2f} | {r['clip']['fps']:.1f} |")
            for key, c in r["clip"].items():
                if key.startswith("tiling_"):
                    lines.append(f"| {r['variant']} | {key[7:]} | {c['faces_per_frame']:.2f} | {c['fps']:.1f} |")
    return lines


def plot(document: dict, path: Path) -> None:
    """Median latency per stage and variant as a horizontal bar chart (drawn with OpenCV)."""
    rows = [r for r in document["results"] if "error" not in r]
    stages = [s for s in STAGES if s != "frame"]
    colours = [(66, 133, 244), (52, 168, 83), (251, 188, 5), (234, 67, 53), (171, 71, 188), (0, 172, 193)]
    width, left, bar = 1000, 170, 26
    height = 60 + len(rows) * (bar + 18) + 40
    image = np.full((height, width, 3), 255, np.uint8)
    longest = max((sum(r["stages"][s]["median_ms"] for s in stages) for r in rows), default=1.0)
    scale = (width - left - 200) / longest  # room for the label after the longest bar
    cv2.putText(image, "median latency per stage (ms, stacked), 640x480 frame, 5 faces; whole frame's median in brackets",
                (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    for i, r in enumerate(rows):
        y = 50 + i * (bar + 18)
        cv2.putText(image, r["variant"], (10, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        x = left
        for stage, colour in zip(stages, colours):
            w = max(1, int(r["stages"][stage]["median_ms"] * scale))
            cv2.rectangle(image, (x, y), (x + w, y + bar), colour[::-1], -1)
            x += w
        stacked = sum(r["stages"][s]["median_ms"] for s in stages)
        cv2.putText(image, f"{stacked:.1f} ms (frame {r['stages']['frame']['median_ms']:.1f})", (x + 6, y + 18),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    x = 10
    for stage, colour in zip(stages, colours):
        cv2.rectangle(image, (x, height - 28), (x + 14, height - 14), colour[::-1], -1)
        cv2.putText(image, stage, (x + 18, height - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        x += 30 + 9 * len(stage)
    cv2.imwrite(str(path), image)


def write(document: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.md", out / "bench.png"]
    paths[0].write_text(json.dumps(document, indent=2) + "\n")
    paths[1].write_text(markdown(document))
    plot(document, paths[2])
    return paths


if __name__ == "__main__":  # one variant, in its own process: python -m maskwatch.benchmarks.speed.bench VARIANT CONFIG_JSON
    print(json.dumps(measure(sys.argv[1], BenchConfig(**json.loads(sys.argv[2])))))
