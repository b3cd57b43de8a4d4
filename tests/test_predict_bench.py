"""maskwatch predict's output schema, and maskwatch bench producing every field."""
import json

import cv2
import pytest

from maskwatch.benchmarks.speed.bench import STAGES
from maskwatch.edge.cli import main

LABELS = {"with_mask", "without_mask", "mask_weared_incorrect"}


def check_prediction(line: dict) -> None:
    """The documented predict schema, field by field."""
    assert set(line) == {"image", "width", "height", "detections"}
    assert isinstance(line["image"], str) and line["width"] > 0 and line["height"] > 0
    for d in line["detections"]:
        assert {"box", "score", "label", "label_score", "landmarks"} <= set(d) <= {
            "box", "score", "label", "label_score", "landmarks", "crop_probabilities", "mask_probabilities"}
        for key in ("crop_probabilities", "mask_probabilities"):
            if key in d:
                assert len(d[key]) == 3 and abs(sum(d[key]) - 1) < 0.01  # an int8 output is quantized
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 <= line["width"] and 0 <= y1 < y2 <= line["height"]
        assert 0 < d["score"] <= d["label_score"] <= 1 and d["label"] in LABELS
        assert len(d["landmarks"]) == 5 and all(len(p) == 2 for p in d["landmarks"])


def test_predict_writes_one_valid_line_per_image(tmp_path, sample_image):
    wide = tmp_path / "wide.jpg"
    cv2.imwrite(str(wide), cv2.copyMakeBorder(cv2.imread(str(sample_image)), 0, 0, 300, 0, cv2.BORDER_CONSTANT))
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(sample_image), str(tmp_path / "*.jpg"), "--jsonl", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["image"] for x in lines] == ["astronaut.jpg", "wide.jpg"]
    for line in lines:
        check_prediction(line)
        assert len(line["detections"]) == 1 and line["detections"][0]["label"] == "without_mask"
    assert lines[1]["width"] == 812 and lines[1]["detections"][0]["box"][0] > 300  # the frame's own pixels


def test_predict_on_real_scenes_with_a_low_threshold(scenes, tmp_path):
    files = sorted(scenes.iterdir())[:3]
    out = tmp_path / "low.jsonl"
    assert main(["predict", *map(str, files), "--jsonl", str(out), "--threshold", "0.02"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3 and sum(len(x["detections"]) for x in lines) > 3
    for line in lines:
        check_prediction(line)


def test_predict_bad_input(tmp_path, capsys):
    (tmp_path / "not-an-image.png").write_text("hello")
    assert main(["predict", str(tmp_path / "not-an-image.png"), "--jsonl", str(tmp_path / "o.jsonl")]) == 2
    assert "not-an-image.png: not a readable image" in capsys.readouterr().err


def test_predict_skips_a_broken_image_and_keeps_the_rest(tmp_path, sample_image, caplog):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "made" / "out.jsonl"
    assert main(["predict", str(tmp_path / "broken.png"), str(sample_image), "--jsonl", str(out)]) == 1
    assert [json.loads(x)["image"] for x in out.read_text().splitlines()] == ["astronaut.jpg"]
    assert "broken.png: not a readable image (skipped)" in caplog.text


def test_bench_produces_every_field(tmp_path):
    assert main(["bench", "--variants", "litert-int8-320", "onnx-fp32-320", "--warmup", "1", "--repeats", "3",
                 "--clip-frames", "4", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "bench.json").read_text())
    assert {"cpu", "cores", "versions", "commit", "date"} <= set(document["environment"])
    for result in document["results"]:
        assert "error" not in result, result
        assert result["faces_in_frame"] == 5
        for stage in STAGES:
            s = result["stages"][stage]
            assert 0 < s["median_ms"] <= s["p90_ms"] <= s["p99_ms"] and s["n"] == 3
        assert result["clip"]["fps"] > 0 and result["peak_rss_mb"] > 0
    assert "litert-int8-320" in (tmp_path / "bench.md").read_text()
    assert cv2.imread(str(tmp_path / "bench.png")) is not None


def test_bench_unknown_variant(capsys):
    assert main(["bench", "--variants", "tpu-int4"]) == 2
    assert "unknown variant 'tpu-int4'" in capsys.readouterr().err


def test_eval_voc_side_by_side(scenes, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--voc", str(scenes.parent), "--variants", "litert-int8-320", "onnx-fp32-640",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## litert-int8-320" in printed and "## onnx-fp32-640" in printed
    figures = json.loads(out.read_text())
    small, large = figures["litert-int8-320"]["all"], figures["onnx-fp32-640"]["all"]
    assert 0.3 < small["face_ap"] < large["face_ap"] <= 1.0  # a 640 input finds more small faces
    assert figures["onnx-fp32-640"]["ignore_small"]["face_recall"] > large["face_recall"]


def test_eval_rules_score_each_rule_and_skip_them_for_a_face_only_detector(scenes, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--voc", str(scenes.parent), "--variants", "litert-int8-320", "litert-int8-320-mask",
                 "--rules", "crop", "detector", "--json", str(out)]) == 0
    assert "litert-int8-320 has no mask head: rule detector not scored" in capsys.readouterr().err
    figures = json.loads(out.read_text())
    assert sorted(figures) == ["litert-int8-320-mask/crop", "litert-int8-320-mask/detector", "litert-int8-320/crop"]
    assert all(0.3 < figures[key]["all"]["map_2class"] <= 1.0 for key in figures)


def test_eval_crops(data, tmp_path, capsys):
    assert main(["eval", "--crops", str(data / "crops" / "chandrikadeb7"), "--variants", "litert-int8-320"]) == 0
    assert "macro" in capsys.readouterr().out.lower()


def test_eval_bad_input_names_the_file(tmp_path, capsys):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "a.xml").write_text("<annotation><filename>a.png</filename><size><width>10</width>"
                                                   "<height>10</height></size></annotation>")
    assert main(["eval", "--voc", str(tmp_path), "--split", "all"]) == 2
    assert "a.xml" in capsys.readouterr().err
    (tmp_path / "annotations" / "a.xml").write_text("<annotation><broken")
    assert main(["eval", "--voc", str(tmp_path), "--split", "all"]) == 2
    assert "a.xml" in capsys.readouterr().err
    (tmp_path / "annotations" / "a.xml").unlink()
    assert main(["eval", "--voc", str(tmp_path)]) == 2
    assert "holds no annotations" in capsys.readouterr().err


def test_bench_baseline_beside_the_converted_pipeline(tmp_path):
    pytest.importorskip("tensorflow", reason="--baseline needs maskwatch[convert] (TensorFlow)")
    assert main(["bench", "--variants", "litert-int8-320", "--warmup", "1", "--repeats", "2", "--clip-frames", "2",
                 "--baseline", "--out", str(tmp_path)]) == 0
    baseline = json.loads((tmp_path / "bench.json").read_text())["baseline"]
    assert baseline["faces_in_frame"] == 5 and baseline["frame"]["median_ms"] > 0
    assert baseline["speed_ratio"]["litert-int8-320"] > 1


def test_soak_memory_and_descriptors_stay_within_the_limit():
    from maskwatch.benchmarks.speed.soak import LIMIT_PERCENT, WARM_UP_FRAMES, markdown, soak

    result = soak(frames=2 * WARM_UP_FRAMES, every=100)
    assert [s["frame"] for s in result["samples"]][-2:] == [1100, 1199] and result["warm_up_sample"]["frame"] == 600
    assert result["events"]["new"] >= 2 and result["events"]["end"] >= 1  # faces came and went
    # after warm-up, over 600 frames of tracks starting and ending, nothing may keep growing
    assert result["rss_growth_percent"] <= LIMIT_PERCENT, result["samples"]
    assert result["fd_growth_percent"] <= LIMIT_PERCENT, result["samples"]
    assert result["within_limit"] and "within" in markdown(result)
    with pytest.raises(ValueError, match="at least 1200 frames"):
        soak(frames=100)
