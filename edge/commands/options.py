"""Argument groups and helpers shared by several subcommands."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..detector import MAX_INPUT_SIZE
from ..errors import InputError

#: How the commands that take many images treat a broken one (their help says so).
SKIPPED = "An unreadable image is skipped with a one-line warning naming it; the exit status is then 1."


def bounded(kind, low, high, what: str):
    """An argparse type: ``kind`` (int or float) within ``low``..``high`` inclusive, else a one-line error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text}: {what} must be {low} to {high}")
        return value
    return parse


#: --input-size: 32 px (one stride-32 cell) to the config's cap.
INPUT_SIZE = bounded(int, 32, MAX_INPUT_SIZE, "the input size")
#: --threshold: a face probability.
THRESHOLD = bounded(float, 0.0, 1.0, "a score threshold")


def default_of(section, field: str):
    """The default of a config section's field: a command-line option's default comes from there."""
    return section.model_fields[field].default


def backends() -> list[str]:
    """``auto`` and every inference runtime in the registry."""
    from ..runtimes import BACKEND_CHOICES

    return list(BACKEND_CHOICES)


def section(kind, option_names: dict[str, str], **values):
    """A config section (``DetectorConfig``, ``ClassifierConfig``) from command-line values; a value the
    section refuses is a one-line InputError naming the option (``option_names``: field -> option)."""
    from pydantic import ValidationError

    try:
        return kind(**{key: value for key, value in values.items() if value is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        raise InputError(f"{option_names.get(field, field)}: {error['msg']}") from None


def model_options(parser: argparse.ArgumentParser) -> None:
    from ..classifier import DEFAULT_CLASSIFIER
    from ..detector import DEFAULT_DETECTOR, DetectorConfig

    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="detector model (default: %(default)s)")
    parser.add_argument("--classifier", default=DEFAULT_CLASSIFIER, help="classifier model (default: %(default)s)")
    parser.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the shipped models)")
    parser.add_argument("--backend", default="auto", choices=backends(), help="runtime for both models")
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--input-size", type=INPUT_SIZE, default=None, help="longest input side for dynamic-shape detectors")
    parser.add_argument("--threshold", type=THRESHOLD, default=default_of(DetectorConfig, "score_threshold"),
                        help="minimum face score; 0.02 keeps faces for evaluation (default: %(default)s)")
    mask_rule_options(parser)
    tiling_options(parser)


def detector_section(args: argparse.Namespace, model: str):
    """The ``detector`` section that ``--detector``/``--model``, ``--backend``, ``--threads``, ``--threshold``,
    ``--input-size``, ``--tiling`` and ``--min-face-px`` describe."""
    from ..detector import DetectorConfig

    return section(DetectorConfig, {"score_threshold": "--threshold", "input_size": "--input-size",
                                    "threads": "--threads"},
                   model=str(model), backend=args.backend, threads=args.threads, score_threshold=args.threshold,
                   input_size=args.input_size, tiling=tiling_section(args))


def tiling_options(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """``--tiling`` (one mode, or with ``several`` a list scored side by side) and ``--min-face-px``."""
    from ..tiling import TILING_MODES, TilingConfig

    mode = default_of(TilingConfig, "mode")
    parser.add_argument("--tiling", choices=TILING_MODES, default=[mode] if several else mode,
                        nargs="+" if several else None,
                        help="off: the whole frame in one pass; grid: the whole frame and overlapping tiles; auto: "
                             "tiles only for frames larger than one tile" + (", several side by side" if several else "")
                             + f" (default: {mode})")
    parser.add_argument("--min-face-px", type=float, default=default_of(TilingConfig, "min_face_px"),
                        help="smallest face, in the image's pixels, tiling must find; sets the tile size "
                             "(default: %(default)s)")


def tiling_section(args: argparse.Namespace, mode: str | None = None):
    """The ``detector.tiling`` section from ``--tiling`` (or ``mode``) and ``--min-face-px``; None when the
    command has neither option."""
    from ..tiling import TilingConfig

    if not hasattr(args, "min_face_px"):
        return None
    return section(TilingConfig, {"min_face_px": "--min-face-px", "mode": "--tiling"},
                   mode=mode or args.tiling, min_face_px=args.min_face_px)


def mask_rule_options(parser: argparse.ArgumentParser) -> None:
    from ..mask_state import DEFAULT_RULE, RULES, SMALL_FACE_PX

    parser.add_argument("--mask-rule", default=DEFAULT_RULE, choices=RULES,
                        help="how a face's mask state is read: crop classifier, detector's mask head, product, "
                             "or by face size (default: %(default)s)")
    parser.add_argument("--small-face-px", type=float, default=SMALL_FACE_PX,
                        help="with --mask-rule size: faces under this use the mask head (default: %(default)s)")


def config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML config file (keys: docs/configuration.md)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set tracker.vote_agree=4 (repeatable)")


def load(args: argparse.Namespace, **flags):
    """The validated config from ``--config``, ``--set`` and the command's own flags (None: not given)."""
    from ..config import load_config, parse_override

    overrides = dict(parse_override(text) for text in args.overrides)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return load_config(args.config, overrides)


def output(path: Path, **options):
    """``path`` opened for writing, its folder made first; InputError naming it when that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", **options)
    except OSError as exc:
        raise InputError(f"{path}: cannot write there ({exc.strerror or exc})") from None
