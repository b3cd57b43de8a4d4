"""``maskwatch predict``: detector + classifier on images, one JSON line per image."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import SKIPPED, detector_section, model_options, output, section


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = f"Run the whole pipeline on image files, folders or globs; boxes in each image's pixels. {SKIPPED}"
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--jsonl", type=Path, required=True, help="output file ('-' for standard output)")
    model_options(parser)
    parser.set_defaults(handler=predict)


def predictor(args: argparse.Namespace):
    from ..classifier import ClassifierConfig
    from ..face_reader import FaceReader
    from ..predict import ImagePredictor

    classifier = section(ClassifierConfig, {"threads": "--threads", "small_face_px": "--small-face-px"},
                         model=args.classifier, backend=args.backend, threads=args.threads, rule=args.mask_rule,
                         small_face_px=args.small_face_px)
    return ImagePredictor(FaceReader.from_config(detector_section(args, args.detector), classifier, args.models_dir))


def predict(args: argparse.Namespace) -> int:
    from ..image import expand_images
    from ..predict import predict_files

    files = expand_images(args.images)
    image_predictor = predictor(args)
    if str(args.jsonl) == "-":
        return predict_files(image_predictor, files, sys.stdout, progress=False)
    with output(args.jsonl) as out:
        return predict_files(image_predictor, files, out)
