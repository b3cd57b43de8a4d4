"""Training end to end on a small real subset, export parity Keras / TFLite / ONNX."""
import json
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="maskwatch[convert] (TensorFlow) is not installed")

from maskwatch.convert.classifier.export import agreement, export, keras_probabilities  # noqa: E402
from maskwatch.convert.classifier.train import TrainConfig, load_samples, train, train_quantization_aware  # noqa: E402
from maskwatch.convert.data.faces import CLASSES, crop_batch  # noqa: E402
from maskwatch.edge.classifier import MaskClassifier  # noqa: E402
from maskwatch.edge.errors import ConfigError, ConversionError, InputError  # noqa: E402
from maskwatch.edge.manifest import Manifest  # noqa: E402

FILES = ("mask_mnv2_64_fp32.tflite", "mask_mnv2_64_int8.tflite", "mask_mnv2_64_fp32.onnx")


def scene_sources(data):
    """Both street-scene sources; jolignier is skipped, saying so, where ../shared/data lacks it."""
    if not (data / "jolignier" / "annotations").is_dir():
        pytest.skip(f"{data / 'jolignier'} is absent: training on both scene sources is not tried")
    return [data / "andrewmvd", data / "jolignier"]


@pytest.fixture(scope="module")
def small_run(data, tmp_path_factory):
    config = TrainConfig(voc=scene_sources(data), crops=[data / "crops" / "chandrikadeb7"], input_size=64,
                         limit=24, head_epochs=1, finetune_epochs=1, steps_per_epoch=2, batch=32)
    samples, _ = load_samples(config)
    model, history = train(config, samples)
    aware = train_quantization_aware(replace(config, qat_epochs=1, steps_per_epoch=8), samples, model, history)
    out = tmp_path_factory.mktemp("classifier")
    names = export(model, config, samples, out, calib_count=16, int8_model=aware)
    return config, samples, model, history, out, names, aware


def test_training_runs_three_phases_and_exports_every_format(small_run):
    config, samples, model, history, out, names, _ = small_run
    assert [h["phase"] for h in history] == ["head", "finetune", "quantization-aware", "quantization-aware"]
    assert [h["epoch"] for h in history[2:]] == [0, 1]  # phase 3 scores its copy before fine-tuning, then each epoch
    assert history[2]["loss"] is None and all(np.isfinite(h["loss"]) for h in history if h["loss"] is not None)
    for h in history[:2]:  # early stopping on the pooled val macro F1; each data set's is logged
        assert sorted(h["val_macro_f1_by_dataset"]) == ["andrewmvd", "chandrikadeb7", "jolignier"]
        assert h["score"] == h["val_macro_f1"]
    assert sorted(names) == sorted(FILES)
    manifest = Manifest.load(out)
    for name in FILES:
        entry = manifest.entries[name]
        assert entry.task == "mask_classification" and entry.labels == list(CLASSES)
        assert entry.metrics["crops"] == sum(s.split == "val" for s in samples)
        assert len(entry.metrics["confusion"]) == 3
        by_set = entry.metrics["by_dataset"]
        assert sorted(by_set) == ["andrewmvd", "chandrikadeb7", "jolignier"]
        assert sum(f["crops"] for f in by_set.values()) == entry.metrics["crops"]
        by_size = entry.metrics["by_face_size"]  # scene crops only: the crop folders have no boxes
        assert set(by_size) <= {"0-24px", "24-48px", "48-px"}
        assert sum(f["crops"] for f in by_size.values()) == by_set["andrewmvd"]["crops"] + by_set["jolignier"]["crops"]
        agreement = entry.metrics["agreement"]  # with the Keras model it came from, crop by crop
        if "fp32" in name:
            assert agreement["same_class"] == 1.0 and agreement["max_abs_diff"] < 1e-3
            assert entry.calibration is None
        else:  # converted from the quantization-aware copy, whose ranges were set from training batches
            assert agreement["same_class"] > 0.9 and agreement["mean_abs_diff"] < 0.05
            assert entry.calibration["method"] == "quantization-aware training"
            assert entry.metrics["agreement_with_float"]["same_class"] > 0.9
        low, high = entry.metrics["classes"]["with_mask"]["recall_ci95"]
        assert low <= entry.metrics["classes"]["with_mask"]["recall"] <= high
    assert manifest.entries["mask_mnv2_64_int8.tflite"].input.dtype == "uint8"
    assert manifest.entries["mask_mnv2_64_fp32.onnx"].input.shape[0] is None  # faces batched on ONNX


def test_export_parity_keras_tflite_onnx(small_run):
    config, samples, model, _, out, _, aware = small_run
    crops = [s.pixels for s in samples if s.split == "val"][:24]
    fp32 = MaskClassifier("mask_mnv2_64_fp32.tflite", models_dir=out)
    batch = np.stack([fp32.resize(c) for c in crops]).astype(np.float32)
    keras_p = model.predict(batch, verbose=0)
    np.testing.assert_allclose(fp32.classify_crops(crops), keras_p, atol=1e-4)
    np.testing.assert_allclose(MaskClassifier("mask_mnv2_64_fp32.onnx", models_dir=out).classify_crops(crops), keras_p, atol=1e-4)
    val = [s for s in samples if s.split == "val"]
    int8 = MaskClassifier("mask_mnv2_64_int8.tflite", models_dir=out).classify_crops([s.pixels for s in val])
    recorded = Manifest.load(out).entries["mask_mnv2_64_int8.tflite"].metrics["agreement"]
    assert recorded == pytest.approx(agreement(int8, keras_probabilities(aware, val, config.input_size)), abs=1e-6)
    with_float = agreement(int8, keras_probabilities(model, val, config.input_size))
    assert recorded != pytest.approx(with_float, abs=1e-6)
    assert Manifest.load(out).entries["mask_mnv2_64_int8.tflite"].metrics["agreement_with_float"] == pytest.approx(with_float, abs=1e-6)


def test_quantization_aware_copy_starts_from_the_trained_weights(small_run):
    from maskwatch.convert.classifier.qat import tf_keras_twin

    config, samples, model, _, _, _, aware = small_run
    batch = crop_batch([s for s in samples if s.split == "val"][:32], config.input_size).astype(np.float32)
    np.testing.assert_allclose(tf_keras_twin(model).predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-5)
    assert any("quant" in v.name for v in aware.weights)  # fake-quantization ranges, learnt in training
    assert aware.predict(batch, verbose=0).shape == (32, len(CLASSES))


def test_phase_3_keeps_the_state_that_agrees_best_with_the_float_model(small_run):
    from maskwatch.convert.classifier.qat import tf_keras_twin

    config, samples, model, history, _, _, aware = small_run
    x = crop_batch([s for s in samples if s.split == "val"], config.input_size).astype(np.float32)
    phase3 = [h for h in history if h["phase"] == "quantization-aware"]
    assert {h["target"] for h in phase3} == {"float model"} and all(h["score"] == h["agreement"] for h in phase3)
    aware_p, float_p = aware.predict(x, verbose=0), tf_keras_twin(model).predict(x, verbose=0)
    kept = max(phase3, key=lambda h: (h["agreement"], -h["probability_difference"]))  # ties: the closer probabilities
    assert (aware_p.argmax(1) == float_p.argmax(1)).mean() == pytest.approx(kept["agreement"])
    assert np.abs(aware_p - float_p).mean() == pytest.approx(kept["probability_difference"], rel=1e-3)


def test_activation_ranges_are_set_from_the_batches(small_run):
    import tf_keras

    from maskwatch.convert.classifier.qat import ACTIVATION_RANGES, quantization_aware, set_activation_ranges, tf_keras_twin

    config, samples, model, _, _, _, _ = small_run
    crops = crop_batch([s for s in samples if s.split == "train"][:64], config.input_size).astype(np.float32)
    batches = np.split(crops, 4)
    aware = quantization_aware(model)
    assert set_activation_ranges(aware, iter(batches)) == 3  # the first batch only brings the ranges near
    ranges = {v.name.split(":")[0]: float(v.numpy()) for v in aware.variables
              if v.name.split("/")[-1].split(":")[0] in ACTIVATION_RANGES}
    assert len(ranges) > 100 and -6.0 not in ranges.values()  # none left at its start, -6..6 (ReLU6 can reach 6)
    assert all(value <= 0 for name, value in ranges.items() if name.endswith("_min"))
    assert all(value >= 0 for name, value in ranges.items() if name.endswith("_max"))
    twin = tf_keras_twin(model)  # the first ReLU sees unquantized input: its range is the float model's
    relu = tf_keras.Model(twin.inputs, twin.get_layer("Conv1_relu").output)
    assert ranges["quant_Conv1_relu/output_min"] == 0.0
    assert ranges["quant_Conv1_relu/output_max"] == pytest.approx(
        np.mean([relu.predict(b, verbose=0).max() for b in batches[1:]]), rel=0.03)
    with pytest.raises(ConversionError, match="at least two batches"):
        set_activation_ranges(quantization_aware(model), iter(batches[:1]))


def test_qat_epochs_are_checked_before_training(data):
    crops = [data / "crops" / "chandrikadeb7"]
    with pytest.raises(ConfigError, match="--qat-target 'logits': choose float or labels"):
        load_samples(TrainConfig(crops=crops, qat_target="logits"))
    with pytest.raises(ConfigError, match="--qat-epochs -1"):
        load_samples(TrainConfig(crops=crops, qat_epochs=-1))
    with pytest.raises(ConfigError, match="--qat-epochs 2: quantization-aware training is for mobilenetv2 only"):
        load_samples(TrainConfig(crops=crops, backbone="xception", qat_epochs=2))
    from maskwatch.convert.classifier.train import qat_epochs

    assert qat_epochs(TrainConfig()) == 2 and qat_epochs(TrainConfig(backbone="xception")) == 0


def test_training_is_repeatable(data):
    config = TrainConfig(crops=[data / "crops" / "chandrikadeb7"], input_size=64, limit=8, head_epochs=1,
                         finetune_epochs=1, steps_per_epoch=1, batch=8)
    samples, _ = load_samples(config)
    first = train(config, samples)[1]
    second = train(config, samples)[1]
    assert [h["loss"] for h in first] == pytest.approx([h["loss"] for h in second], rel=1e-4)


def test_training_needs_data(tmp_path):
    with pytest.raises(ConfigError, match="--voc or --crops"):
        load_samples(TrainConfig())
    with pytest.raises(InputError):
        load_samples(TrainConfig(crops=[tmp_path]))


def test_synthetic_incorrect_masks_join_the_train_side_only(data):
    from maskwatch.convert.classifier.train import add_synthetic_incorrect

    config = TrainConfig(crops=[data / "crops" / "chandrikadeb7"], limit=30, synth_incorrect=6)
    samples, _ = load_samples(config)
    grown = add_synthetic_incorrect(samples, config)
    made = grown[len(samples):]
    assert len(made) == 6
    assert all(s.synthetic and s.split == "train" and s.label == "mask_weared_incorrect" for s in made)


def test_synth_incorrect_auto_synthesizes_only_without_real_incorrect_masks(data):
    from maskwatch.convert.classifier.train import SYNTH_WITHOUT_REAL, synth_count

    config = TrainConfig(crops=[data / "crops" / "chandrikadeb7"], limit=30)
    samples, _ = load_samples(config)
    assert config.synth_incorrect is None and not any(s.label == "mask_weared_incorrect" for s in samples)
    assert synth_count(samples, config) == SYNTH_WITHOUT_REAL  # web crops alone: the class exists only synthesized
    train_side = next(i for i, s in enumerate(samples) if s.split == "train")
    val_side = next(i for i, s in enumerate(samples) if s.split == "val")
    relabel = lambda i: samples[:i] + [replace(samples[i], label="mask_weared_incorrect")] + samples[i + 1:]
    assert synth_count(relabel(val_side), config) == SYNTH_WITHOUT_REAL  # val crops are never trained on
    assert synth_count(relabel(train_side), config) == 0
    assert synth_count(relabel(train_side), replace(config, synth_incorrect=50)) == 50


def test_synth_incorrect_option_takes_a_count_or_auto(capsys):
    from maskwatch.edge.cli import build_parser

    parser = build_parser(["convert"])
    parse = lambda *extra: parser.parse_args(["convert", "train-classifier", "--crops", ".", *extra]).synth_incorrect
    assert parse() is None and parse("--synth-incorrect", "auto") is None and parse("--synth-incorrect", "0") == 0
    for bad in ("many", "-5"):
        with pytest.raises(SystemExit):
            parse("--synth-incorrect", bad)
        assert f"--synth-incorrect: '{bad}': give a count of 0 or more, or auto" in capsys.readouterr().err


def test_xception_is_the_seed_papers_head():
    from maskwatch.convert.classifier.train import build_model

    model, _ = build_model(TrainConfig(backbone="xception", input_size=71))
    assert model.output_shape == (None, 3)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [1024, 3]
    assert any(layer.__class__.__name__ == "Dropout" for layer in model.layers)
    with pytest.raises(ConfigError, match="at least 71"):
        build_model(TrainConfig(backbone="xception", input_size=64))


def test_synthetic_share_sets_how_often_synthesized_crops_are_drawn():
    from maskwatch.convert.classifier.train import _Batches
    from maskwatch.convert.data.faces import FaceSample

    def crop(label, synthetic=False, dataset="street"):
        return FaceSample(pixels=np.zeros((8, 8, 3), np.uint8), label=label, source="x.png", split="train",
                          synthetic=synthetic, dataset=dataset)

    samples = [crop("with_mask")] * 40 + [crop("mask_weared_incorrect")] * 2 + [crop("mask_weared_incorrect", True)] * 18
    synthetic = np.array([s.synthetic for s in samples])
    for share, expected in ((None, 0.9), (0.5, 0.5), (0.0, 0.0)):
        sampler = _Batches(samples, TrainConfig(synthetic_share=share))
        incorrect = sampler.labels == CLASSES.index("mask_weared_incorrect")
        assert sampler.p[incorrect & synthetic].sum() / sampler.p[incorrect].sum() == pytest.approx(expected)
        assert sampler.p[incorrect].sum() == pytest.approx(_Batches(samples, TrainConfig()).p[incorrect].sum())
    with pytest.raises(ConfigError, match="--synthetic-share 1.5"):
        _Batches(samples, TrainConfig(synthetic_share=1.5))


def test_source_power_evens_out_data_sets_inside_a_class():
    from maskwatch.convert.classifier.train import draw_weights
    from maskwatch.convert.data.faces import FaceSample

    def crops(label, dataset, n):
        return [FaceSample(np.zeros((8, 8, 3), np.uint8), label, "x.png", "train", dataset=dataset)] * n

    samples = crops("without_mask", "street", 100) + crops("without_mask", "web", 900) + crops("with_mask", "street", 400)
    street = np.array([s.dataset == "street" and s.label == "without_mask" for s in samples])
    unmasked = np.array([s.label == "without_mask" for s in samples])
    for power, expected in ((1.0, 0.1), (0.5, 0.25), (0.0, 0.5)):
        p = draw_weights(samples, TrainConfig(source_power=power))
        assert p[street].sum() / p[unmasked].sum() == pytest.approx(expected)
        assert p[unmasked].sum() == pytest.approx(1000 ** 0.5 / (1000 ** 0.5 + 400 ** 0.5))  # class shares unchanged
    natural = draw_weights(samples, TrainConfig(sampling_power=1.0))
    assert np.allclose(natural, 1 / len(samples))  # powers 1 and 1: every crop as likely


def test_the_manifest_records_intervals_and_agreement(small_run):
    out = small_run[4]
    figures = Manifest.load(out).entries["mask_mnv2_64_int8.tflite"].metrics
    c = figures["classes"]["without_mask"]
    assert c["precision_ci95"][0] <= c["precision"] <= c["precision_ci95"][1]
    assert c["recall_ci95"][0] <= c["recall"] <= c["recall_ci95"][1]
    assert 0.5 <= figures["agreement"]["same_class"] <= 1.0           # the int8 file follows its Keras model
    assert 0.5 <= figures["agreement_with_float"]["same_class"] <= 1.0  # and the float model


def test_val_fold_holds_out_another_fifth_of_the_source_images(data):
    from maskwatch.benchmarks.accuracy.splits import FOLDS, fold_of

    config = TrainConfig(crops=[data / "crops" / "chandrikadeb7"], val_fold=3)
    samples, report = load_samples(config)
    folds = np.array([fold_of(s.source) for s in samples])
    val = np.array([s.split == "val" for s in samples])
    assert (val == (folds == 3)).all() and 0.1 < val.mean() < 0.3
    assert report.by_split[("val", "with_mask")] == sum(v and s.label == "with_mask" for v, s in zip(val, samples))
    assert set(folds) == set(range(FOLDS))
    with pytest.raises(ConfigError, match="--val-fold 5"):
        load_samples(TrainConfig(crops=[data / "crops" / "chandrikadeb7"], val_fold=5))


def test_finetune_from_names_a_backbone_layer_or_fails_before_training(data):
    config = TrainConfig(crops=[data / "crops" / "chandrikadeb7"], finetune_from="block_99_expand")
    with pytest.raises(ConfigError, match="--finetune-from 'block_99_expand'.*default is block_8_expand"):
        load_samples(config)
    from maskwatch.convert.classifier.train import build_model, finetune_start

    config = TrainConfig(finetune_from="block_13_expand")
    base = build_model(config)[1]
    assert base.layers[finetune_start(config, base)].name == "block_13_expand"
    assert base.layers[finetune_start(TrainConfig(), base)].name == "block_8_expand"


def test_train_classifier_without_the_qat_toolchain_stops_before_training(data, tmp_path, monkeypatch, capsys):
    import sys

    from maskwatch.edge.cli import main

    monkeypatch.setitem(sys.modules, "tensorflow_model_optimization", None)  # as if not installed
    argv = ["convert", "train-classifier", "--crops", str(data / "crops" / "chandrikadeb7"), "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["maskwatch: error: maskwatch convert needs the toolchain (tensorflow_model_optimization is missing): "
                   "pip install -e '.[convert]' in the checkout, or train with --qat-epochs 0"]
    assert not any(tmp_path.iterdir())


def test_without_a_tflite_int8_file_phase_3_is_skipped(data, tmp_path, monkeypatch):
    import sys

    from maskwatch.edge.cli import main

    monkeypatch.setitem(sys.modules, "tensorflow_model_optimization", None)  # not needed, so not asked for
    argv = ["convert", "train-classifier", "--crops", str(data / "crops" / "chandrikadeb7"), "--out", str(tmp_path),
            "--formats", "tflite-fp32", "--input-size", "64", "--limit", "8", "--head-epochs", "1", "--finetune-epochs", "1",
            "--steps-per-epoch", "1"]
    assert main(argv) == 0
    entry = Manifest.load(tmp_path).entries["mask_mnv2_64_fp32.tflite"]
    assert entry.source["training"]["history"] == "training/mask_mnv2_64.json" and entry.source["training"]["epochs"] == 2
    history = json.loads((tmp_path / "training" / "mask_mnv2_64.json").read_text())  # the sidecar, not in the wheel
    assert [h["phase"] for h in history] == ["head", "finetune"]
    # --synth-incorrect auto: web crops alone have no incorrectly worn face, so some were made; the number is recorded
    from maskwatch.convert.classifier.train import SYNTH_WITHOUT_REAL

    assert entry.source["training"]["config"]["synth_incorrect"] == str(SYNTH_WITHOUT_REAL)
    assert sorted(p.name for p in tmp_path.glob("*.tflite")) == ["mask_mnv2_64_fp32.tflite"]


def test_aligned_faces_are_cut_on_the_landmarks_and_the_device_is_told(small_run, data, tmp_path):
    """--align landmarks: scene and crop-folder faces turned upright on the detector's landmarks, and the
    exported entry says so, so the device's MaskClassifier cuts faces the same way."""
    from maskwatch.edge.align import aligned_face
    from maskwatch.edge.image import read_image, stretch
    from maskwatch.convert.classifier.train import DETECTOR_FOR_CROPS
    from maskwatch.convert.data.faces import read_rgb
    from maskwatch.edge.detector import DetectorConfig, FaceDetector

    config, _, model, _, _, _, _ = small_run
    aligned = replace(config, voc=[data / "andrewmvd"], aligned=True, limit=6)
    samples, _ = load_samples(aligned)
    scene = next(s for s in samples if s.dataset == "andrewmvd")
    image = read_image(scene.source)
    faces = FaceDetector.from_config(DetectorConfig(model=DETECTOR_FOR_CROPS, score_threshold=0.3)).detect(image)
    expected = [stretch(aligned_face(image, points, config.margin)[:, :, ::-1], *scene.pixels.shape[1::-1])
                for points in faces.landmarks]
    assert any(np.array_equal(scene.pixels, e) for e in expected)  # one of the scene's faces, aligned
    photos = [s for s in samples if s.dataset == "chandrikadeb7"]
    whole = [stretch(read_rgb(s.source), *s.pixels.shape[1::-1]) for s in photos]  # as a box-crop run reads them
    assert sum(not np.array_equal(s.pixels, w) for s, w in zip(photos, whole)) > len(photos) / 2  # aligned where a face is found
    names = export(model, aligned, samples, tmp_path, formats=("tflite-fp32",), calib_count=4)
    assert names == ["mask_mnv2_64_aligned_fp32.tflite"]
    assert MaskClassifier(names[0], models_dir=tmp_path).aligned
    assert not MaskClassifier(FILES[0], models_dir=small_run[4]).aligned
    with pytest.raises(ConfigError, match="needs --voc-boxes detector"):
        load_samples(replace(aligned, voc_boxes="annotated"))
