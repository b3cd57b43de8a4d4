"""``maskwatch detect``: faces in images, one annotated picture per image."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import INPUT_SIZE, SKIPPED, THRESHOLD, backends, default_of, detector_section, tiling_options


def configure(parser: argparse.ArgumentParser) -> None:
    from ..detector import DEFAULT_DETECTOR, DEFAULT_DYNAMIC_SIZE, DetectorConfig

    parser.description = f"Detect faces; with no IMAGE, runs on the sample photo shipped in the package. {SKIPPED}"
    parser.add_argument("images", nargs="*", type=Path, help="image files (default: the shipped sample)")
    parser.add_argument("--model", default=DEFAULT_DETECTOR,
                        help="detector file name in the manifest, or a path (default: %(default)s)")
    parser.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the shipped models)")
    parser.add_argument("--backend", default="auto", choices=backends(), help="inference runtime (default: by file type)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--threshold", type=THRESHOLD, default=default_of(DetectorConfig, "score_threshold"),
                        help="minimum face score (default: %(default)s)")
    parser.add_argument("--input-size", type=INPUT_SIZE, default=None,
                        help=f"longest input side for dynamic-shape models (default: {DEFAULT_DYNAMIC_SIZE})")
    tiling_options(parser)
    parser.add_argument("--out", type=Path, default=Path("maskwatch-out"),
                        help="folder for annotated pictures (default: %(default)s)")
    parser.set_defaults(handler=detect)


def detect(args: argparse.Namespace) -> int:
    import cv2

    from ..detector import FaceDetector
    from ..draw import draw_faces
    from ..face_reader import FaceReader
    from ..image import ReadableImages
    from ..sample import sample_image

    section = detector_section(args, args.model)
    reader = FaceReader(FaceDetector.from_config(section, args.models_dir), tiling=section.tiling)
    images = ReadableImages(list(args.images or [sample_image()]))
    for path, image in images:
        faces = reader.detect(image)
        args.out.mkdir(parents=True, exist_ok=True)  # made by the first picture: a failed run leaves no folder
        target = args.out / f"{path.stem}.faces.jpg"
        cv2.imwrite(str(target), draw_faces(image, faces))
        print(json.dumps({"image": path.name, "faces": [
            {"box": [round(float(v), 1) for v in b], "score": round(float(s), 4)}
            for b, s in zip(faces.boxes, faces.scores)], "annotated": str(target)}))
    return images.exit_status()
