"""The ``maskwatch`` command: one entry point, one subcommand per job."""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .classifier import DEFAULT_CLASSIFIER
from .errors import InputError, MaskwatchError
from .detector import DEFAULT_DETECTOR
from .sample import sample_image

#: Crops per classifier call in ``maskwatch classify`` (a batch-1 model runs them one by one).
CLASSIFY_BATCH = 64
#: How the commands that take many images treat a broken one (their help says so).
SKIPPED = "An unreadable image is skipped with a one-line warning naming it; the exit status is then 1."


def build_parser() -> argparse.ArgumentParser:
    from convert.cli import add_commands as add_convert_commands

    from .manifest import default_models_dir

    parser = argparse.ArgumentParser(prog="maskwatch", description="Face-mask detection for edge devices.")
    parser.add_argument("--version", action="version", version=f"maskwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    detect = sub.add_parser("detect", help="detect faces in images and write annotated pictures",
                            description="Detect faces; with no IMAGE, runs on the sample photo shipped in the package. "
                                        f"{SKIPPED}")
    detect.add_argument("images", nargs="*", type=Path, help="image files (default: the shipped sample)")
    detect.add_argument("--model", default=DEFAULT_DETECTOR, help="detector file name in the manifest, or a path (default: %(default)s)")
    detect.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the shipped models)")
    detect.add_argument("--backend", default="auto", choices=["auto", "litert", "onnx"], help="inference runtime (default: by file type)")
    detect.add_argument("--threads", type=int, default=None, help="inference threads")
    detect.add_argument("--threshold", type=float, default=0.5, help="minimum face score (default: %(default)s)")
    detect.add_argument("--input-size", type=int, default=None, help="longest input side for dynamic-shape models (default: 640)")
    detect.add_argument("--out", type=Path, default=Path("maskwatch-out"), help="folder for annotated pictures (default: %(default)s)")
    detect.set_defaults(handler=_detect)

    classify = sub.add_parser("classify", help="classify face crops as with_mask / without_mask / mask_weared_incorrect",
                              description="Classify face-crop images (files, folders or globs); writes file,label,score rows. "
                                          f"{SKIPPED}")
    classify.add_argument("paths", nargs="+", help="crop images, folders or glob patterns")
    classify.add_argument("--csv", type=Path, default=None, help="write rows here (default: standard output)")
    classify.add_argument("--model", default=DEFAULT_CLASSIFIER, help="classifier file name in the manifest, or a path (default: %(default)s)")
    classify.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the shipped models)")
    classify.add_argument("--backend", default="auto", choices=["auto", "litert", "onnx"])
    classify.add_argument("--threads", type=int, default=None)
    classify.set_defaults(handler=_classify)

    run = sub.add_parser("run", help="camera -> detect -> classify -> track -> GPIO light/buzzer and events",
                         description="Run the pipeline. With no --source and no config, runs on the built-in sample clip.")
    _config_options(run)
    run.add_argument("--source", default=None, help="camera index or /dev/videoN, rtsp:// or http:// URL, video file, images, picamera2, sample")
    run.add_argument("--backend", default=None, choices=["auto", "litert", "onnx"], help="runtime for both models")
    run.add_argument("--gpio", default=None, choices=["auto", "gpiozero", "jetson", "mock", "none"], help="light/buzzer backend")
    run.add_argument("--events", type=Path, default=None, help="JSON Lines event log (rotated by size)")
    run.add_argument("--mqtt", default=None, metavar="HOST[:PORT]", help="publish events to this MQTT broker")
    run.add_argument("--preview", default=None, help="annotated video file, or http://127.0.0.1:PORT for MJPEG")
    run.add_argument("--print-events", action="store_true", help="print events as JSON lines")
    run.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    run.set_defaults(handler=_run)

    doctor = sub.add_parser("doctor", help="what this device has: runtimes, delegates, cameras, GPIO, models")
    _config_options(doctor)
    doctor.set_defaults(handler=_doctor)

    predict = sub.add_parser("predict", help="detector + classifier on images, one JSON line per image",
                             description="Run the whole pipeline on image files, folders or globs; boxes in each image's pixels. "
                                         f"{SKIPPED}")
    predict.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    predict.add_argument("--jsonl", type=Path, required=True, help="output file ('-' for standard output)")
    _model_options(predict)
    predict.set_defaults(handler=_predict)

    evaluate = sub.add_parser("eval", help="accuracy on annotated scenes (--voc) or crop folders (--crops)",
                              description="Score model variants side by side; prints tables, writes JSON.")
    target = evaluate.add_mutually_exclusive_group(required=True)
    target.add_argument("--voc", type=Path, help="PASCAL VOC folder (images/, annotations/)")
    target.add_argument("--crops", type=Path, help="folder with one subfolder of face crops per class")
    evaluate.add_argument("--variants", nargs="+", default=["litert-int8-320"], metavar="NAME",
                          help="model/backend/size combinations, as in bench (default: %(default)s)")
    evaluate.add_argument("--split", choices=["train", "val", "all"], default="val", help="side of the content-hash split (default: %(default)s)")
    evaluate.add_argument("--json", type=Path, default=None, help="write all figures here")
    evaluate.add_argument("--threads", type=int, default=None)
    evaluate.set_defaults(handler=_eval)

    bench = sub.add_parser("bench", help="latency per stage and FPS for every backend, precision and input size",
                           description="Benchmark the shipped models on this device; writes JSON, markdown and a PNG plot.")
    bench.add_argument("--variants", nargs="+", default=None, metavar="NAME", help="default: all (see benchmarks/bench.py)")
    bench.add_argument("--warmup", type=int, default=10)
    bench.add_argument("--repeats", type=int, default=100)
    bench.add_argument("--clip-frames", type=int, default=300, help="frames for the FPS measurement")
    bench.add_argument("--video", default=None, help="video file for the FPS measurement (default: the five-face frame)")
    bench.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    bench.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for bench.json, bench.md, bench.png")
    bench.add_argument("--baseline", action="store_true", help="also the float TensorFlow pipeline (needs maskwatch[convert])")
    bench.add_argument("--voc", type=Path, default=None, help="with --baseline: VOC folder whose val split scores both pipelines")
    bench.add_argument("--soak", type=int, default=None, metavar="FRAMES",
                       help="instead: run the whole pipeline this many frames, recording RSS and open descriptors (soak.json, soak.md)")
    bench.set_defaults(handler=_bench)

    from .deploy import add_commands as add_deploy_commands

    add_deploy_commands(sub)
    add_convert_commands(sub, str(default_models_dir()))
    return parser


def _detect(args: argparse.Namespace) -> int:
    import cv2

    from .detector import FaceDetector
    from .draw import draw_faces
    from .image import ReadableImages
    from .postprocess import PostprocessSettings

    detector = FaceDetector(args.model, backend=args.backend, threads=args.threads, models_dir=args.models_dir,
                            settings=PostprocessSettings(score_threshold=args.threshold), input_size=args.input_size)
    args.out.mkdir(parents=True, exist_ok=True)
    images = ReadableImages(list(args.images or [sample_image()]))
    for path, image in images:
        faces = detector.detect(image)
        target = args.out / f"{path.stem}.faces.jpg"
        cv2.imwrite(str(target), draw_faces(image, faces))
        print(json.dumps({"image": path.name, "faces": [
            {"box": [round(float(v), 1) for v in b], "score": round(float(s), 4)}
            for b, s in zip(faces.boxes, faces.scores)], "annotated": str(target)}))
    return images.exit_status()


def _model_options(parser) -> None:
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="detector model (default: %(default)s)")
    parser.add_argument("--classifier", default=DEFAULT_CLASSIFIER, help="classifier model (default: %(default)s)")
    parser.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the shipped models)")
    parser.add_argument("--backend", default="auto", choices=["auto", "litert", "onnx"], help="runtime for both models")
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--input-size", type=int, default=None, help="longest input side for dynamic-shape detectors")
    parser.add_argument("--threshold", type=float, default=0.5, help="minimum face score; 0.02 keeps faces for evaluation (default: %(default)s)")


def _predictor(args: argparse.Namespace, detector: str | None = None, classifier: str | None = None):
    from .classifier import MaskClassifier
    from .detector import FaceDetector
    from .postprocess import PostprocessSettings
    from .predict import ImagePredictor

    return ImagePredictor(
        FaceDetector(detector or args.detector, backend=args.backend, threads=args.threads, models_dir=args.models_dir,
                     settings=PostprocessSettings(score_threshold=args.threshold), input_size=args.input_size),
        MaskClassifier(classifier or args.classifier, backend=args.backend, threads=args.threads, models_dir=args.models_dir))


def _predict(args: argparse.Namespace) -> int:
    from .image import expand_images
    from .predict import predict_files

    files = expand_images(args.images)
    predictor = _predictor(args)
    if str(args.jsonl) == "-":
        return predict_files(predictor, files, sys.stdout, progress=False)
    with _output(args.jsonl) as out:
        return predict_files(predictor, files, out)


def _eval(args: argparse.Namespace) -> int:
    from .classifier import MaskClassifier
    from .detector import FaceDetector
    from .errors import ConfigError
    from .evaluate import EVAL_THRESHOLD, crop_figures, predictor_process, scene_figures
    from .postprocess import PostprocessSettings
    from .predict import ImagePredictor
    from .scoring import table
    from .variants import VARIANTS

    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
    results = {}
    for name in args.variants:
        detector_file, classifier_file, size = VARIANTS[name]
        classifier = MaskClassifier(classifier_file, threads=args.threads)
        if args.crops:
            results[name] = crop_figures(classifier, args.crops, args.split)
        else:
            detector = FaceDetector(detector_file, threads=args.threads, input_size=size,
                                    settings=PostprocessSettings(score_threshold=EVAL_THRESHOLD))
            results[name] = scene_figures(predictor_process(ImagePredictor(detector, classifier)), args.voc, args.split)
        print(f"## {name}\n\n{table(results[name])}\n")
    if args.json:
        with _output(args.json) as out:
            out.write(json.dumps(results, indent=2, default=float) + "\n")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import os

    from benchmarks.bench import BenchConfig, run_variants, write

    from .variants import VARIANTS

    from .errors import ConfigError, RuntimeUnavailable

    unknown = [v for v in args.variants or [] if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
    if args.baseline:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:  # found, not imported: variants run before TensorFlow loads
            raise RuntimeUnavailable("--baseline needs the float TensorFlow pipeline: pip install 'maskwatch[convert]'")
    if args.soak:
        from benchmarks.soak import markdown, soak

        result = soak(args.soak)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "soak.md").write_text(markdown(result))
        print(markdown(result), end="")
        return 0
    config = BenchConfig(warmup=args.warmup, repeats=args.repeats, clip_frames=args.clip_frames, video=args.video,
                         threads=args.threads or os.cpu_count())
    document = run_variants(args.variants or list(VARIANTS), config)
    if args.baseline:
        from benchmarks.baseline import compare

        document["baseline"] = compare(document, config, args.voc)
    for path in write(document, args.out):
        print(path)
    return 0


def _config_options(parser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML config file (see README)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set tracker.vote_agree=4 (repeatable)")


def _load(args: argparse.Namespace, **flags):
    from .config import load_config, parse_override

    overrides = dict(parse_override(text) for text in args.overrides)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return load_config(args.config, overrides)


def _run(args: argparse.Namespace) -> int:
    from .app import run

    mqtt = None
    if args.mqtt:
        host, _, port = args.mqtt.partition(":")
        mqtt = {"host": host, **({"port": int(port)} if port else {})}
    config = _load(args, **{"source.spec": args.source, "detector.backend": args.backend,
                            "classifier.backend": args.backend, "signal.backend": args.gpio,
                            "events.jsonl": {"path": str(args.events)} if args.events else None,
                            "events.mqtt": mqtt, "preview.target": args.preview})
    stats = run(config, max_frames=args.max_frames, print_events=args.print_events)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(stats.events.items())) or "none"
    print(f"maskwatch: {stats.frames} frames, {stats.faces} faces, {stats.classified} classified, "
          f"{stats.fps:.1f} fps; events: {counts}", file=sys.stderr)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import report

    text, code = report(_load(args))
    print(text)
    return code


def _classify(args: argparse.Namespace) -> int:
    import csv

    import cv2

    from .classifier import MaskClassifier
    from .image import ReadableImages, expand_images

    classifier = MaskClassifier(args.model, backend=args.backend, threads=args.threads, models_dir=args.models_dir)
    images = ReadableImages(expand_images(args.paths))
    with _output(args.csv, newline="") if args.csv else contextlib.nullcontext(sys.stdout) as out:
        writer = csv.writer(out)
        writer.writerow(["file", "label", "score"])
        crops = ((path, classifier.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))) for path, image in images)
        while batch := list(itertools.islice(crops, CLASSIFY_BATCH)):  # held at the input size, not as read
            for (path, _), probabilities in zip(batch, classifier.classify_crops([crop for _, crop in batch])):
                best = int(probabilities.argmax())
                writer.writerow([str(path), classifier.labels[best], f"{probabilities[best]:.4f}"])
    return images.exit_status()


def _output(path: Path, **options):
    """``path`` opened for writing, its folder made first; InputError naming it when that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", **options)
    except OSError as exc:
        raise InputError(f"{path}: cannot write there ({exc.strerror or exc})") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except MaskwatchError as exc:
        print(f"maskwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
