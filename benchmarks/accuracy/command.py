"""``maskwatch eval``: accuracy on annotated scenes (``--voc``) or crop folders (``--crops``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maskwatch.edge.commands.options import output


def configure(parser: argparse.ArgumentParser) -> None:
    from maskwatch.benchmarks.accuracy.packing import parse_frame_size
    from maskwatch.benchmarks.variants import default_variant
    from maskwatch.edge.commands.options import tiling_options
    from maskwatch.edge.mask_state import SMALL_FACE_PX

    parser.description = ("Score model variants side by side; prints tables, writes JSON. A variant that cannot run "
                          "(a model or runtime missing) is reported and the others are still scored (exit status 1).")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--voc", type=Path, nargs="+", help="PASCAL VOC folders (images/, annotations/): each "
                        "scored apart and, with several, pooled")
    target.add_argument("--crops", type=Path, help="folder with one subfolder of face crops per class")
    parser.add_argument("--variants", nargs="+", default=[default_variant()], metavar="NAME",
                        help="model/backend/size combinations, as in bench (default: %(default)s)")
    parser.add_argument("--split", choices=["train", "val", "all"], default="val",
                        help="side of the content-hash split (default: %(default)s)")
    parser.add_argument("--val-fold", type=int, default=0, choices=range(5), metavar="K",
                        help="fold that is the val side, 0-4 (default: %(default)s, the project's val split)")
    parser.add_argument("--rules", nargs="+", default=None, metavar="RULE",
                        help="with --voc: score each mask rule (crop, detector, product, size) on the same scenes "
                             "(default: crop; the others need a mask-aware detector)")
    parser.add_argument("--small-face-px", type=float, default=SMALL_FACE_PX,
                        help="face size of the 'size' rule (default: %(default)s)")
    parser.add_argument("--frame-size", type=parse_frame_size, default=None, metavar="WxH",
                        help="with --voc: pack the scenes at their native pixels onto frames of this size (e.g. "
                             "1920x1080), as a pole camera sees them, and score those frames")
    tiling_options(parser, several=True)
    parser.add_argument("--json", type=Path, default=None, help="write all figures here")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    parser.set_defaults(handler=evaluate)


def evaluate(args: argparse.Namespace) -> int:
    from maskwatch.benchmarks.accuracy.tables import table
    from maskwatch.benchmarks.variants import VARIANTS
    from maskwatch.edge.errors import ConfigError, ModelError, RuntimeUnavailable
    from maskwatch.edge.mask_state import RULES

    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
    rules = args.rules or ["crop"]
    if bad := [r for r in rules if r not in RULES]:
        raise ConfigError(f"--rules {bad[0]!r}: choose from {', '.join(RULES)}")
    if args.crops and rules != ["crop"]:
        raise ConfigError("--rules scores scenes (--voc); crop folders have no detector")
    results, failed = {}, {}
    for name in args.variants:
        try:
            results.update(_score_variant(name, args, rules))
        except (ModelError, RuntimeUnavailable) as exc:  # a model or runtime missing: the others are still scored
            failed[name] = str(exc)
            print(f"maskwatch eval: {name} not scored: {exc}", file=sys.stderr)
    for key, figures in results.items():
        print(f"## {key}\n\n{table(figures)}\n")
    if args.json:
        with output(args.json) as out:
            out.write(json.dumps({**results, **({"failed": failed} if failed else {})}, indent=2, default=float) + "\n")
    return 1 if failed else 0


def _score_variant(name: str, args: argparse.Namespace, rules: list[str]) -> dict:
    """``{key: figures}`` for one variant: one key per mask rule and tiling mode scored."""
    from maskwatch.benchmarks.accuracy.evaluate import EVAL_THRESHOLD, crop_figures, predictor_process, source_figures
    from maskwatch.benchmarks.variants import VARIANTS
    from maskwatch.edge.classifier import ClassifierConfig, MaskClassifier
    from maskwatch.edge.commands.options import tiling_section
    from maskwatch.edge.detector import DetectorConfig, FaceDetector
    from maskwatch.edge.face_reader import FaceReader
    from maskwatch.edge.mask_state import MaskRule
    from maskwatch.edge.predict import ImagePredictor

    detector_file, classifier_file, size = VARIANTS[name]
    classifier = MaskClassifier.from_config(ClassifierConfig(model=classifier_file, threads=args.threads))
    if args.crops:
        return {name: crop_figures(classifier, args.crops, args.split, args.val_fold)}
    detector = FaceDetector.from_config(DetectorConfig(model=detector_file, threads=args.threads,
                                                       input_size=size, score_threshold=EVAL_THRESHOLD))
    results = {}
    for rule in rules:
        mask_rule = MaskRule(rule, args.small_face_px)
        if mask_rule.needs_detector and detector.labels is None:  # a face-only detector: crop only
            print(f"({name} has no mask head: rule {rule} not scored)", file=sys.stderr)
            continue
        for mode in args.tiling:
            reader = FaceReader(detector, classifier, mask_rule, tiling_section(args, mode))
            process = predictor_process(ImagePredictor(reader))
            key = name + ("" if rules == ["crop"] else f"/{rule}") + ("" if len(args.tiling) == 1 else f" tiling={mode}")
            by_source = source_figures(process, args.voc, args.split, args.val_fold, args.frame_size)
            for source, figures in by_source.items():
                results[key if len(by_source) == 1 else f"{key} [{source}]"] = figures
    return results
