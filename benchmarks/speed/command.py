"""``maskwatch bench``: latency per stage and FPS for every backend, precision and input size."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    from maskwatch.benchmarks.accuracy.packing import parse_frame_size
    from maskwatch.benchmarks.speed.bench import BenchConfig
    from maskwatch.edge.commands.options import bounded
    from maskwatch.edge.tiling import TILING_MODES

    defaults = BenchConfig()
    parser.description = ("Benchmark the models on this device: latency per stage, frames per second and peak RSS "
                          "per variant; prints the table and writes bench.json, bench.md and bench.png.")
    parser.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                        help="variants to measure (benchmarks/variants.py; default: every variant whose models are "
                             "in the models folder; an installed wheel has the default one only)")
    parser.add_argument("--warmup", type=int, default=defaults.warmup,
                        help="untimed runs of each stage first (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=defaults.repeats,
                        help="timed runs of each stage (default: %(default)s)")
    parser.add_argument("--clip-frames", type=int, default=defaults.clip_frames,
                        help="frames for the frames-per-second measurement (default: %(default)s)")
    parser.add_argument("--video", default=None, help="video file for the FPS measurement (default: the five-face frame)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="folder for the result files (default: %(default)s)")
    parser.add_argument("--baseline", action="store_true", help="also the float TensorFlow pipeline (needs maskwatch[convert])")
    parser.add_argument("--voc", type=Path, default=None, help="VOC folder: with --baseline its val split scores both "
                        "pipelines; with --frame-size its val scenes packed at native pixels make the large frame")
    parser.add_argument("--frame-size", type=parse_frame_size, default=None, metavar="WxH",
                        help="also measure tiling on a frame of this size (e.g. 1920x1080): passes, per-tile and "
                             "per-frame latency, faces found per mode, and the video schedule under a tile budget")
    parser.add_argument("--tiling", nargs="+", choices=TILING_MODES, default=defaults.tiling,
                        help="with --frame-size: the modes measured side by side (default: %(default)s)")
    parser.add_argument("--min-face-px", type=float, default=defaults.min_face_px,
                        help="with --frame-size: smallest face tiling must find (default: %(default)s)")
    parser.add_argument("--tiles-per-frame", type=bounded(int, 1, 1024, "--tiles-per-frame"), default=None,
                        help="with --frame-size: the video schedule's tile budget (default: every tile once a second "
                             "at 10 frames a second)")
    parser.add_argument("--imports", action="store_true",
                        help="instead: what starting maskwatch --help and maskwatch run imports, and how long it takes "
                             "(imports.json, imports.md)")
    parser.add_argument("--soak", type=int, default=None, metavar="FRAMES",
                        help="instead: run the whole pipeline this many frames, recording RSS and open descriptors (soak.json, soak.md)")
    parser.set_defaults(handler=bench)


def bench(args: argparse.Namespace) -> int:
    from maskwatch.edge.errors import ConfigError, RuntimeUnavailable
    from maskwatch.edge.manifest import default_models_dir
    from maskwatch.benchmarks.variants import VARIANTS, present

    unknown = [v for v in args.variants or [] if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
    if args.baseline:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:  # found, not imported: variants run before TensorFlow loads
            raise RuntimeUnavailable("--baseline needs the float TensorFlow pipeline: pip install -e '.[convert]' in the checkout")
    if args.imports:
        from maskwatch.benchmarks.speed.imports import markdown as imports_markdown, measure as measure_imports

        result = measure_imports()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "imports.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "imports.md").write_text(imports_markdown(result))
        print(imports_markdown(result), end="")
        return 0
    if args.soak:
        from maskwatch.benchmarks.speed.soak import markdown, soak

        result = soak(args.soak)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "soak.md").write_text(markdown(result))
        print(markdown(result), end="")
        return 0 if result["within_limit"] else 1
    from maskwatch.benchmarks.speed.bench import BenchConfig, run_variants, write

    config = BenchConfig(warmup=args.warmup, repeats=args.repeats, clip_frames=args.clip_frames, video=args.video,
                         threads=args.threads or os.cpu_count(),
                         frame_size=list(args.frame_size) if args.frame_size else None, tiling=args.tiling,
                         min_face_px=args.min_face_px, tiles_per_frame=args.tiles_per_frame,
                         voc=str(args.voc) if args.voc and args.frame_size else None)
    variants = args.variants
    if variants is None:
        variants = present()
        if missing := [v for v in VARIANTS if v not in variants]:
            print(f"maskwatch bench: {len(missing)} variants skipped, their models are not in {default_models_dir()} "
                  f"({', '.join(missing)}); set MASKWATCH_MODELS to a checkout's models/ to measure them",
                  file=sys.stderr)
    document = run_variants(variants, config)
    if args.baseline:
        from maskwatch.benchmarks.speed.baseline import compare

        document["baseline"] = compare(document, config, args.voc)
    from .bench import markdown

    paths = write(document, args.out)
    print(markdown(document))
    print("written: " + ", ".join(str(path) for path in paths))
    failed = [r["variant"] for r in document["results"] if "error" in r]
    if failed:  # the files say why; a benchmark that did not measure must not look like one that did
        first = next(r for r in document["results"] if "error" in r)
        print(f"maskwatch: error: {len(failed)} of {len(document['results'])} variants failed "
              f"({', '.join(failed)}); first: {first['error']}", file=sys.stderr)
        return 1
    return 0
