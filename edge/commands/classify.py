"""``maskwatch classify``: face-crop images to ``file,label,score`` rows."""
from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from pathlib import Path

from .options import SKIPPED, backends, output, section

#: Crops per classifier call (a batch-1 model runs them one by one).
CLASSIFY_BATCH = 64


def configure(parser: argparse.ArgumentParser) -> None:
    from ..classifier import DEFAULT_CLASSIFIER

    parser.description = f"Classify face-crop images (files, folders or globs); writes file,label,score rows. {SKIPPED}"
    parser.add_argument("paths", nargs="+", help="crop images, folders or glob patterns")
    parser.add_argument("--csv", type=Path, default=None, help="write rows here (default: standard output)")
    parser.add_argument("--model", default=DEFAULT_CLASSIFIER,
                        help="classifier file name in the manifest, or a path (default: %(default)s)")
    parser.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the shipped models)")
    parser.add_argument("--backend", default="auto", choices=backends())
    parser.add_argument("--threads", type=int, default=None)
    parser.set_defaults(handler=classify)


def classify(args: argparse.Namespace) -> int:
    import csv

    import cv2

    from ..classifier import ClassifierConfig, MaskClassifier
    from ..image import ReadableImages, expand_images

    classifier = MaskClassifier.from_config(section(ClassifierConfig, {"threads": "--threads"}, model=args.model,
                                                    backend=args.backend, threads=args.threads), args.models_dir)
    images = ReadableImages(expand_images(args.paths))
    with output(args.csv, newline="") if args.csv else contextlib.nullcontext(sys.stdout) as out:
        writer = csv.writer(out)
        writer.writerow(["file", "label", "score"])
        crops = ((path, classifier.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))) for path, image in images)
        while batch := list(itertools.islice(crops, CLASSIFY_BATCH)):  # held at the input size, not as read
            for (path, _), probabilities in zip(batch, classifier.classify_crops([crop for _, crop in batch])):
                best = int(probabilities.argmax())
                writer.writerow([str(path), classifier.labels[best], f"{probabilities[best]:.4f}"])
    return images.exit_status()
