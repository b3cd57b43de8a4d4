"""Landmark-aligned crops and the nose-and-mouth band, on synthetic landmarks and a real face."""
import cv2
import numpy as np
import pytest

from maskwatch.edge.align import (FILL, TEMPLATE, TEMPLATE_SIDE, _template, aligned_crop, aligned_face, band,
                                  native_side, similarity)

COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255)]


def placed(angle_deg: float, scale: float, shift) -> np.ndarray:
    """TEMPLATE turned by ``angle_deg``, scaled and moved: a face's landmarks in a frame."""
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (TEMPLATE - TEMPLATE.mean(0)) @ rotation.T * scale + np.asarray(shift, np.float64)


def dotted_frame(points: np.ndarray, shape=(480, 640), radius: int = 3) -> np.ndarray:
    frame = np.zeros((*shape, 3), np.uint8)
    for (x, y), colour in zip(points, COLOURS):
        cv2.circle(frame, (int(round(x)), int(round(y))), radius, colour, -1)
    return frame


def colour_centre(image: np.ndarray, colour) -> np.ndarray:
    mask = np.all(np.abs(image.astype(int) - colour) < 90, axis=2)
    ys, xs = np.nonzero(mask)
    assert len(xs), f"colour {colour} not in the crop"
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("angle", [-35, 0, 20, 90])
def test_a_turned_face_is_brought_upright_onto_the_template(angle):
    landmarks = placed(angle, 2.5, (320, 240))
    target = _template(96, 96, 0.1)
    matrix = similarity(landmarks, target)
    moved = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(moved, target, atol=1e-6)
    crop = aligned_crop(dotted_frame(landmarks, radius=6), landmarks, size=96)
    assert crop.shape == (96, 96, 3)
    for point, colour in zip(target, COLOURS):
        assert np.linalg.norm(colour_centre(crop, colour) - point) < 1.5


def test_a_tiny_face_is_enlarged_to_the_crop():
    landmarks = placed(10, 0.12, (100, 80))  # eyes about 4 px apart
    crop = aligned_crop(dotted_frame(landmarks, radius=1), landmarks, size=96)
    assert crop.shape == (96, 96, 3)
    left_eye, right_eye = (colour_centre(crop, c) for c in COLOURS[:2])
    assert right_eye[0] - left_eye[0] > 20 and abs(right_eye[1] - left_eye[1]) < 4  # enlarged and level


def test_a_face_at_the_frame_edge_is_filled_with_grey_where_the_frame_ends():
    landmarks = placed(0, 1.0, (10, 240))  # the left eye and mouth corner lie outside the frame
    frame = np.full((480, 640, 3), 30, np.uint8)
    crop = aligned_crop(frame, landmarks, size=96)
    assert crop.shape == (96, 96, 3)
    assert (crop[:, 0] == FILL).all() and (crop[:, -1] == 30).all()


def test_landmarks_in_one_point_are_refused_in_one_line():
    with pytest.raises(ValueError, match="too close together to align"):
        aligned_crop(np.zeros((100, 100, 3), np.uint8), np.full((5, 2), 50.0))


def test_the_band_holds_the_nose_and_the_mouth_not_the_eyes():
    landmarks = placed(-15, 3.0, (320, 240))
    strip = band(dotted_frame(landmarks, radius=6), landmarks, width=96, height=48)
    assert strip.shape == (48, 96, 3)
    nose, mouth_left, mouth_right = (colour_centre(strip, c) for c in COLOURS[2:])
    assert nose[1] < mouth_left[1] and abs(mouth_left[1] - mouth_right[1]) < 1.5
    for colour in COLOURS[:2]:  # the eyes are above the band
        assert not np.all(np.abs(strip.astype(int) - colour) < 90, axis=2).any()


def test_a_real_face_comes_out_upright(sample_image):
    from maskwatch.edge.detector import DetectorConfig, FaceDetector

    image = cv2.imread(str(sample_image))
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((256, 256), 25, 1.0), (512, 512))
    faces = FaceDetector.from_config(DetectorConfig(model="retinaface_mnv2_320_int8.tflite")).detect(turned)
    eyes = faces.landmarks[0][:2]
    assert abs(np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1]))) > 15  # turned in the frame
    matrix = similarity(faces.landmarks[0], _template(96, 96, 0.1))
    upright = faces.landmarks[0] @ matrix[:, :2].T + matrix[:, 2]
    assert abs(upright[1, 1] - upright[0, 1]) < 3  # eyes level in the crop
    assert aligned_crop(turned, faces.landmarks[0]).shape == (96, 96, 3)



@pytest.mark.parametrize("scale", [0.5, 1.0, 1.5])
def test_an_aligned_face_keeps_the_face_at_its_own_scale(scale):
    landmarks = placed(30, scale, (320, 240))
    side = native_side(landmarks, margin=0.2)
    assert abs(side - TEMPLATE_SIDE * 1.4 * scale) <= 1
    face = aligned_face(dotted_frame(landmarks, radius=4), landmarks, margin=0.2)
    assert face.shape == (side, side, 3)
    left_eye, right_eye = (colour_centre(face, c) for c in COLOURS[:2])
    assert abs((right_eye[0] - left_eye[0]) - (TEMPLATE[1, 0] - TEMPLATE[0, 0]) * scale) < 2.5  # not resized
    assert abs(right_eye[1] - left_eye[1]) < 2.5  # upright


def test_an_aligned_face_of_a_huge_face_is_capped():
    landmarks = placed(0, 20.0, (1500, 1500))
    assert aligned_face(np.zeros((3000, 3000, 3), np.uint8), landmarks, largest=256).shape == (256, 256, 3)
