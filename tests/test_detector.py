"""The shipped detectors on real runtimes and a real photo that ships inside the package."""
import shutil

import cv2
import numpy as np
import pytest

from maskwatch.edge.detector import FaceDetector
from maskwatch.edge.errors import ConfigError, InputError, ModelError, ModelHashMismatch
from maskwatch.edge.image import read_image
from maskwatch.edge.manifest import Manifest, default_models_dir

SHIPPED = sorted(e.file for e in Manifest.load().find("face_detection"))
#: Where the astronaut's face is in the 512x512 sample (checked by eye on the annotated picture).
FACE = (180, 60, 270, 180)
#: The fine-tuned detector learned the street scenes' annotation, whose boxes start lower (eyebrows,
#: not hairline) and end lower (chin): its box for the same face.
FACE_BY_ARCHITECTURE = {"retinaface-mobilenetv2-mask": (176, 81, 270, 185)}


def test_models_are_shipped():
    formats = {e.format for e in Manifest.load().find("face_detection")}
    assert {"tflite-int8", "tflite-fp32", "onnx-fp32"} <= formats


@pytest.mark.parametrize("name", SHIPPED)
def test_finds_the_face_in_the_sample(name, sample_image):
    detector = FaceDetector(name)
    faces = detector.detect(read_image(sample_image))
    assert len(faces) == 1
    x1, y1, x2, y2 = faces.boxes[0]
    face = FACE_BY_ARCHITECTURE.get(detector.entry.architecture, FACE)
    assert abs(x1 - face[0]) < 12 and abs(y1 - face[1]) < 12 and abs(x2 - face[2]) < 12 and abs(y2 - face[3]) < 12
    assert faces.scores[0] > 0.9
    eyes, nose = faces.landmarks[0, :2], faces.landmarks[0, 2]
    assert np.all((faces.landmarks[0] >= [x1, y1]) & (faces.landmarks[0] <= [x2, y2]))
    assert eyes[:, 1].max() < nose[1]  # eyes above the nose


def test_letterbox_maps_back_to_frame_pixels(sample_image):
    image = read_image(sample_image)
    canvas = np.full((600, 1400, 3), 90, np.uint8)
    canvas[70:582, 800:1312] = image
    detector = FaceDetector("retinaface_mnv2_fp32.onnx")
    plain, placed = detector.detect(image), detector.detect(canvas)
    assert len(placed) == 1
    np.testing.assert_allclose(placed.boxes[0], plain.boxes[0] + [800, 70, 800, 70], atol=6)


def test_bgr_is_converted_to_rgb(sample_image):
    """The model wants RGB; feeding the BGR frame as-is must change the raw scores."""
    detector = FaceDetector("retinaface_mnv2_fp32.onnx", input_size=512)  # 512x512 sample: no resize
    image = read_image(sample_image)
    tensor, _ = detector.prepare(image)
    np.testing.assert_array_equal(tensor[0, :10, :10], cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[:10, :10])


def test_no_faces_gives_typed_empty_arrays():
    faces = FaceDetector("retinaface_mnv2_320_int8.tflite").detect(np.zeros((240, 320, 3), np.uint8))
    assert len(faces) == 0
    assert faces.boxes.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2) and faces.scores.dtype == np.float32


@pytest.mark.parametrize("convert", [lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY),
                                     lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2BGRA),
                                     lambda im: im.astype(np.uint16) * 257])
def test_grey_rgba_and_16_bit_frames(convert, sample_image):
    faces = FaceDetector("retinaface_mnv2_320_int8.tflite").detect(convert(read_image(sample_image)))
    assert len(faces) == 1


def test_bad_frames_are_one_line_errors():
    detector = FaceDetector("retinaface_mnv2_320_int8.tflite")
    for frame in (np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 3), np.float32), "nope"):
        with pytest.raises(InputError):
            detector.detect(frame)


def test_both_backends_agree(sample_image):
    image = read_image(sample_image)
    litert = FaceDetector("retinaface_mnv2_320_fp32.tflite").detect(image)
    onnx = FaceDetector("retinaface_mnv2_fp32.onnx", input_size=320).detect(image)
    np.testing.assert_allclose(litert.boxes, onnx.boxes, atol=0.5)


def _copy_model(tmp_path, name):
    shutil.copy(default_models_dir() / name, tmp_path / name)
    manifest = Manifest.load()
    Manifest(tmp_path, {name: manifest.entries[name]}).save()
    return tmp_path / name


def test_tampered_model_is_refused_naming_the_file(tmp_path):
    path = _copy_model(tmp_path, "retinaface_mnv2_320_int8.tflite")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelHashMismatch, match="retinaface_mnv2_320_int8.tflite.*sha256"):
        FaceDetector(path)


def test_truncated_model_is_refused(tmp_path):
    path = _copy_model(tmp_path, "retinaface_mnv2_fp32.onnx")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelError, match="retinaface_mnv2_fp32.onnx"):
        FaceDetector(path)


def test_model_without_manifest_entry_is_refused(tmp_path):
    path = tmp_path / "stray.tflite"
    shutil.copy(default_models_dir() / "retinaface_mnv2_320_int8.tflite", path)
    with pytest.raises(ModelError, match="stray.tflite.*manifest"):
        FaceDetector(path)


def test_corrupt_manifest_is_one_line_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="manifest.json"):
        Manifest.load(tmp_path)


def test_wrong_backend_for_file_is_refused():
    with pytest.raises(ConfigError, match="onnx runs .onnx"):
        FaceDetector("retinaface_mnv2_320_int8.tflite", backend="onnx")


def test_missing_delegate_or_provider_is_a_clear_error():
    from maskwatch.edge.errors import RuntimeUnavailable

    with pytest.raises(RuntimeUnavailable, match="edgetpu: cannot load libedgetpu.so.1"):
        FaceDetector("retinaface_mnv2_320_int8.tflite", delegate="edgetpu")
    with pytest.raises(RuntimeUnavailable, match="TensorrtExecutionProvider"):
        FaceDetector("retinaface_mnv2_fp32.onnx", providers=["TensorrtExecutionProvider"])
    assert FaceDetector("retinaface_mnv2_320_int8.tflite", delegate="xnnpack").runtime.delegate == "xnnpack"


def test_model_whose_input_shape_disagrees_with_the_manifest_is_refused(tmp_path):
    path = _copy_model(tmp_path, "retinaface_mnv2_320_int8.tflite")
    manifest = Manifest.load(tmp_path)
    entry = manifest.entries[path.name]
    manifest.entries[path.name] = entry.model_copy(update={"input": entry.input.model_copy(update={"shape": [1, 640, 640, 3]})})
    manifest.save()
    with pytest.raises(ModelError, match=r"retinaface_mnv2_320_int8.tflite: input shape \[1, 320, 320, 3\] differs"):
        FaceDetector(path)
