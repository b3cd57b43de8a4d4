"""Installing an exported model: temp file, load-back check, rename, manifest entry."""
from __future__ import annotations

import datetime as dt
import json
from importlib import metadata
from pathlib import Path

from maskwatch.edge.manifest import InputSpec, Manifest, ModelEntry, sha256_of, write_atomic
from maskwatch.edge.runtimes import load_runtime

_VERSIONED = ("maskwatch", "tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")


def converter_versions() -> dict[str, str]:
    found = {}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def install(manifest: Manifest, name: str, blob: bytes, fmt, **fields) -> ModelEntry:
    """Write ``blob`` as ``name`` beside the manifest and record its entry.

    The model goes to a temporary file first and is loaded back by its runtime
    (which also gives the input spec); only then is it renamed into place and
    the manifest rewritten (atomically), so a failed export never replaces a
    good model. ``fields`` are the rest of the :class:`ModelEntry`.
    """
    final = manifest.directory / name
    temp = final.with_name(f".{final.stem}.partial{final.suffix}")
    write_atomic(temp, blob)
    try:
        runtime = load_runtime(temp)
        spec = InputSpec(name=runtime.input_name, shape=list(runtime.input_shape), layout="NHWC",
                         dtype=runtime.input_dtype.name, quantization=runtime.input_quantization)
        entry = ModelEntry(file=name, sha256=sha256_of(temp), size_bytes=len(blob), format=fmt.key,
                           precision=fmt.precision, input=spec, created=dt.date.today().isoformat(),
                           **fields)
        temp.replace(final)
    finally:
        temp.unlink(missing_ok=True)
    manifest.entries[name] = entry
    manifest.save()
    return entry


def write_history(path: Path, history) -> None:
    """The per-epoch history beside the models, in training/ (which the wheel does not carry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history, indent=1, default=str) + "\n")
