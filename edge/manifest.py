"""The model manifest: every shipped or converted model file and what it needs.

``models/manifest.json`` maps each model file name to an entry holding its
sha256, format, precision, input shape and layout, preprocessing, output
names in order, anchors (detectors) or labels (classifiers), source and
licence, converter versions and the figures measured on it. A model file never
travels without its entry, and :func:`resolve` refuses a file whose hash does
not match.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ModelError, ModelHashMismatch, one_line

MANIFEST_NAME = "manifest.json"
FILE_MODE = 0o644
SCHEMA_VERSION = 1


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="input tensor name")
    shape: list[int | None] = Field(description="NHWC shape; None marks a dynamic dimension")
    layout: str = Field("NHWC", description="memory layout of the input tensor")
    dtype: str = Field(description="numpy dtype name of the input tensor")
    quantization: tuple[float, int] | None = Field(None, description="(scale, zero point) of an integer input")


class ModelEntry(BaseModel):
    """One model file's manifest entry."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="file name, relative to the manifest's folder")
    task: str = Field(description="face_detection or mask_classification")
    architecture: str
    sha256: str
    size_bytes: int
    format: str = Field(description="key of the export format table, e.g. tflite-int8")
    precision: str
    input: InputSpec
    preprocessing: dict[str, Any]
    outputs: list[str] = Field(description="output names, in the order the runtime returns them")
    anchors: dict[str, Any] | None = None
    labels: list[str] | None = None
    source: dict[str, Any]
    converter: dict[str, Any]
    calibration: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    created: str

    @model_validator(mode="after")
    def _needs_what_its_task_uses(self) -> "ModelEntry":
        """A detector decodes with its anchors, a mask head or classifier names its columns with labels:
        an entry without them is refused here, not by a traceback at the first frame."""
        if self.task == "face_detection":
            if not self.anchors:
                raise ValueError("a face_detection entry needs anchors (min_sizes, steps, variances)")
            missing = [k for k in ("min_sizes", "steps", "variances") if not isinstance(self.anchors.get(k), list)]
            if missing:
                raise ValueError(f"anchors need {', '.join(missing)} (lists)")
            steps, sizes = self.anchors["steps"], self.anchors["min_sizes"]
            if not steps or not all(isinstance(s, int) and s > 0 for s in steps):
                raise ValueError(f"anchors: steps must be positive whole numbers of pixels (got {steps!r:.80})")
            if len(sizes) != len(steps) or not all(isinstance(level, list) and level and
                                                   all(isinstance(s, (int, float)) and s > 0 for s in level)
                                                   for level in sizes):
                raise ValueError("anchors: min_sizes needs one list of positive sizes per step")
        needs_labels = self.task == "mask_classification" or any(o.startswith("mask_") for o in self.outputs)
        if needs_labels and not self.labels:
            raise ValueError(f"a {self.task} entry with mask outputs needs labels (one per output column)"
                             if self.task == "face_detection" else "a mask_classification entry needs labels")
        return self

    @property
    def dynamic(self) -> bool:
        return any(d is None for d in self.input.shape[1:3])


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_models_dir() -> Path:
    """The shipped models: ``MASKWATCH_MODELS``, else the installed ``maskwatch.models``."""
    env = os.environ.get("MASKWATCH_MODELS")
    if env:
        return Path(env)
    return Path(str(resources.files("maskwatch.models")))


class Manifest:
    """The entries of one ``manifest.json``, keyed by file name."""

    def __init__(self, directory: str | Path, entries: dict[str, ModelEntry] | None = None):
        self.directory = Path(directory)
        self.entries: dict[str, ModelEntry] = dict(entries or {})

    @property
    def path(self) -> Path:
        return self.directory / MANIFEST_NAME

    @classmethod
    def load(cls, directory: str | Path | None = None) -> "Manifest":
        directory = Path(directory) if directory else default_models_dir()
        path = directory / MANIFEST_NAME
        if not path.exists():
            return cls(directory)
        try:
            models = json.loads(path.read_text()).get("models", {})
            items = list(models.items())
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0]
            raise ModelError(f"{path}: not a valid maskwatch manifest ({first})") from None
        entries = {}
        for name, entry in items:
            try:
                entries[name] = ModelEntry.model_validate(entry)
            except ValidationError as exc:
                first = exc.errors()[0]   # a rule across fields has no field to name: its message alone
                detail = one_line(exc) if first["loc"] else first["msg"].removeprefix("Value error, ")
                raise ModelError(f"{path}: entry {name!r}: {detail}") from None
        return cls(directory, entries)

    def save(self) -> None:
        """Write atomically (temp file, fsync, rename): never a half-written manifest."""
        data = {
            "schema": SCHEMA_VERSION,
            "models": {k: self.entries[k].model_dump(mode="json") for k in sorted(self.entries)},
        }
        write_atomic(self.path, (json.dumps(data, indent=2) + "\n").encode())

    def find(self, task: str | None = None, **match) -> list[ModelEntry]:
        found = [e for e in self.entries.values() if task is None or e.task == task]
        for key, value in match.items():
            found = [e for e in found if getattr(e, key) == value]
        return found

    def resolve(self, model: str | Path) -> tuple[Path, ModelEntry]:
        """A model given by manifest name or path -> (path, entry), hash checked."""
        candidate = Path(model)
        if candidate.name in self.entries and (candidate.parent == Path(".") or
                                               candidate.parent.resolve() == self.directory.resolve()):
            path, entry = self.directory / candidate.name, self.entries[candidate.name]
        elif candidate.exists():
            other = Manifest.load(candidate.parent)
            if candidate.name not in other.entries:
                raise ModelError(f"{candidate}: no entry in {other.path}; a model file needs its manifest entry")
            path, entry = candidate, other.entries[candidate.name]
        else:
            raise ModelError(f"{model}: no such model file or manifest entry in {self.path}")
        verify_file(path, entry)
        return path, entry


#: What to do when a listed model is not in the folder: the wheel ships the default models only.
WHERE_MODELS_ARE = ("the installed package ships only the default models: give --models-dir (or set MASKWATCH_MODELS "
                    "to) a folder that has it, such as a checkout's models/")


def verify_file(path: Path, entry: ModelEntry) -> None:
    if not path.exists():
        raise ModelError(f"{path}: model file missing (listed in the manifest); {WHERE_MODELS_ARE}")
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ModelHashMismatch(
            f"{path}: sha256 {actual[:12]}… does not match the manifest's {entry.sha256[:12]}…; refusing a changed or corrupt model"
        )


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would hide models from the service user
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
