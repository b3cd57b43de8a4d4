"""The settings every model section shares: which file, on which runtime, with how many threads.

``DetectorConfig`` and ``ClassifierConfig`` extend ``ModelSection``; the backend
names come from the runtime registry (:data:`maskwatch.edge.runtimes.BACKENDS`).

Example::

    section = ModelSection(model="mask_mnv2_96_int8.tflite", threads=2)
    load_runtime(path, section.backend, threads=section.threads, **section.runtime_options())
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from . import BACKEND_CHOICES
from .litert import DELEGATES

#: LiteRT delegates a config may name (XNNPACK is built in; the others load a shared library)
DELEGATE_CHOICES = tuple(DELEGATES)


#: More inference threads than any edge board has cores only costs memory (and crashes runtimes at 100000).
MAX_THREADS = 64


class ModelSection(BaseModel):
    """One model file and the runtime that runs it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(..., description="model file in the manifest, or a path")
    backend: Literal[BACKEND_CHOICES] = Field("auto", description="inference runtime: auto (by file type), "
                                                                  + ", ".join(BACKEND_CHOICES[1:]))
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description=f"inference threads (1 to {MAX_THREADS})")
    delegate: Literal[DELEGATE_CHOICES] | None = Field(None, description="LiteRT delegate (default: XNNPACK, built in)")
    providers: list[str] | None = Field(None, description="ONNX Runtime providers in order (default: TensorRT, CUDA, "
                                                          "CPU as available)")

    def runtime_options(self) -> dict:
        """The backend-specific options for this model's file: a LiteRT delegate or ONNX Runtime providers."""
        if self.model.endswith(".tflite"):
            return {"delegate": self.delegate} if self.delegate else {}
        return {"providers": self.providers} if self.providers else {}
