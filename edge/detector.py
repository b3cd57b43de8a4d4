"""The face detector: any shipped RetinaFace file on LiteRT or ONNX Runtime.

Example::

    from maskwatch.edge.detector import FaceDetector
    detector = FaceDetector("retinaface_mnv2_320_int8.tflite")
    faces = detector.detect(cv2.imread("street.jpg"))
    for box, score in zip(faces.boxes, faces.scores): ...

Frames are OpenCV BGR; the detector letterboxes them (aspect ratio kept), feeds
the model RGB, decodes the nine raw heads with :mod:`maskwatch.edge.postprocess`, and
returns boxes, scores and five landmarks in the frame's own pixels. A mask-aware model
(``convert train-detector``: manifest outputs ``mask_8`` … ``mask_32`` and ``labels``) also
gives each face's mask-state probabilities (``faces.mask``, columns in ``detector.labels``);
a face-only model gives ``faces.mask = None``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from .errors import ModelError
from .image import fit_size, letterbox, to_bgr8
from .manifest import Manifest
from .postprocess import AnchorConfig, PostprocessSettings, RetinaFaceDecoder
from .runtimes import load_runtime, to_input
from .runtimes.config import ModelSection
from .tiling import TilingConfig

#: The shipped detector used when none is named: the mask-aware RetinaFace fine-tuned on street scenes,
#: int8, 320 px (models/retinaface_mask_mnv2.md); the wheel's own detector is retinaface_mnv2_*.
DEFAULT_DETECTOR = "retinaface_mask_mnv2_320_int8.tflite"
#: Longest input side used by dynamic-shape (ONNX) detectors unless told otherwise.
DEFAULT_DYNAMIC_SIZE = 640
_HEADS = ("bbox", "landmark", "class", "mask")
#: Largest input side: memory grows with its square (4096 px: about 1 GB of activations).
MAX_INPUT_SIZE = 4096


class DetectorConfig(ModelSection):
    """The ``detector`` config section: the face detector's file, runtime and thresholds."""

    model: str = Field(DEFAULT_DETECTOR, description="detector file in the manifest, or a path")
    score_threshold: float = Field(PostprocessSettings.score_threshold, gt=0, lt=1, description="minimum face score")
    iou_threshold: float = Field(PostprocessSettings.iou_threshold, gt=0, lt=1, description="NMS overlap threshold")
    input_size: int | None = Field(None, ge=32, le=MAX_INPUT_SIZE,
                                   description=f"longest input side for dynamic-shape models (32 to {MAX_INPUT_SIZE})")
    tiling: TilingConfig = Field(default_factory=TilingConfig, description="looking closer at frames larger than the "
                                                                           "input: tiles, regions around tracks")


@dataclass(frozen=True)
class Faces:
    """Detections in frame pixels, best first; all arrays empty when there are none."""

    boxes: np.ndarray  #: (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  #: (N,) float32 face probability
    landmarks: np.ndarray  #: (N, 5, 2) float32: eyes (left, right), nose, mouth corners
    mask: np.ndarray | None = None  #: (N, K) float32 mask-state probabilities; None without a mask head

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, mask_labels: int | None = None) -> "Faces":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32),
                   None if mask_labels is None else np.zeros((0, mask_labels), np.float32))


class FaceDetector:
    """RetinaFace on a runtime chosen by name (``auto``, ``litert``, ``onnx``).

    ``model`` is a manifest file name (looked up in ``models_dir``, by default
    the shipped models) or a path to a model file with a manifest beside it.
    Its sha256 is checked against the manifest before it is loaded.
    ``input_size`` sets the longest side for dynamic-shape models.
    """

    def __init__(self, model: str | Path, backend: str = "auto", threads: int | None = None,
                 settings: PostprocessSettings | None = None, input_size: int | None = None,
                 models_dir: str | Path | None = None, **runtime_options):
        self.path, self.entry = Manifest.load(models_dir).resolve(model)
        if self.entry.task != "face_detection":
            raise ModelError(f"{self.path}: a {self.entry.task} model, not a face detector")
        self.runtime = load_runtime(self.path, backend, expected_shape=self.entry.input.shape, threads=threads,
                                    **runtime_options)
        self.decoder = RetinaFaceDecoder(AnchorConfig.from_dict(self.entry.anchors), settings or PostprocessSettings())
        self.input_size = input_size or DEFAULT_DYNAMIC_SIZE
        self._outputs = {kind: [n for n in self.entry.outputs if n.startswith(kind + "_")] for kind in _HEADS}
        if not self._outputs["mask"]:
            del self._outputs["mask"]
        elif not self.entry.labels or len(self._outputs["mask"]) != len(self._outputs["class"]):
            raise ModelError(f"{self.path}: its manifest lists mask outputs but no labels, or not one per level")
        #: the mask head's labels in column order, or None for a face-only model
        self.labels: list[str] | None = list(self.entry.labels) if "mask" in self._outputs else None

    @classmethod
    def from_config(cls, section: DetectorConfig, models_dir: str | Path | None = None) -> "FaceDetector":
        """The detector a ``detector`` config section describes (what the app, CLI, bench and toolchain use)."""
        settings = PostprocessSettings(score_threshold=section.score_threshold, iou_threshold=section.iou_threshold)
        return cls(section.model, backend=section.backend, threads=section.threads, settings=settings,
                   input_size=section.input_size, models_dir=models_dir, **section.runtime_options())

    @property
    def min_face_px(self) -> float:
        """The smallest face, in input pixels, this model is built to find: its smallest anchor."""
        return float(min(min(level) for level in self.decoder.anchor_config.min_sizes))

    @property
    def iou_threshold(self) -> float:
        """The NMS overlap threshold, also used to merge the boxes of several passes."""
        return self.decoder.settings.iou_threshold

    @property
    def nominal_input(self) -> int:
        """The input's longest side: the file's fixed size, or the one set for a dynamic-shape model."""
        _, h, w, _ = self.runtime.input_shape
        return int(max(h, w)) if h and w and not self.entry.dynamic else self.input_size

    def input_shape_for(self, height: int, width: int) -> tuple[int, int]:
        """Model input (height, width) used for a frame of this size."""
        _, h, w, _ = self.runtime.input_shape if not self.entry.dynamic else (None, None, None, None)
        return (h, w) if h and w else fit_size(height, width, self.input_size)

    def prepare(self, frame_bgr: np.ndarray):
        """Letterbox a frame into the model's input tensor; returns (tensor, letterbox)."""
        frame_bgr = to_bgr8(frame_bgr)
        height, width = self.input_shape_for(*frame_bgr.shape[:2])
        image, box = letterbox(frame_bgr, height, width)
        tensor = to_input(image[None], self.runtime)
        return tensor, box

    def raw(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """The model's heads for one input tensor, concatenated per kind: bbox, landmark, class (and mask)."""
        out = self.runtime.run(tensor)
        return {kind: np.concatenate([out[n][0] for n in names]) for kind, names in self._outputs.items()}

    def detect(self, frame_bgr: np.ndarray) -> Faces:
        """Faces in one BGR frame of any size."""
        tensor, box = self.prepare(frame_bgr)
        return self._faces(self.raw(tensor), box, np.asarray(frame_bgr).shape[:2])

    @property
    def batches(self) -> bool:
        """Whether the runtime takes several images in one call (a model with a free batch dimension)."""
        return self.runtime.input_shape[0] is None

    def detect_many(self, frames_bgr: list[np.ndarray]) -> list[Faces]:
        """Faces in each of several frames: one runtime call for all of them when the model has a free
        batch dimension and they letterbox to one input size, else one call each."""
        prepared = [self.prepare(frame) for frame in frames_bgr]
        if len(prepared) < 2 or not self.batches or len({p[0].shape for p in prepared}) != 1:
            return [self._faces(self.raw(t), b, np.asarray(f).shape[:2]) for (t, b), f in zip(prepared, frames_bgr)]
        out = self.runtime.run(np.concatenate([t for t, _ in prepared]))
        return [self._faces({kind: np.concatenate([out[n][i] for n in names]) for kind, names in self._outputs.items()},
                            box, np.asarray(frame).shape[:2])
                for i, ((_, box), frame) in enumerate(zip(prepared, frames_bgr))]

    def _faces(self, heads: dict[str, np.ndarray], box, frame_shape: tuple[int, int]) -> Faces:
        rows = self.decoder(heads["bbox"], heads["landmark"], heads["class"], box.input_height, box.input_width,
                            mask=heads.get("mask"))
        if not len(rows):
            return Faces.empty(None if self.labels is None else len(self.labels))
        h, w = frame_shape
        boxes = box.to_frame(rows[:, :4])
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        landmarks = box.to_frame(rows[:, 5:15]).reshape(-1, 5, 2)
        mask = None if self.labels is None else np.ascontiguousarray(rows[:, 15:])
        return Faces(boxes, rows[:, 4].copy(), landmarks, mask)
