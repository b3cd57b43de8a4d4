"""Named implementations chosen by a config or the command line, each imported only when chosen.

Runtimes, sources, GPIO backends and event sinks are each one such table: a name, the class that
implements it as ``"module:Class"``, and what that kind of thing needs to know about it
(``info``: the model suffixes a runtime runs, the options a source takes). A device that lacks one
implementation's library still loads every other.

Example::

    RUNTIMES = Registry("runtime", {"onnx": Entry("maskwatch.edge.runtimes.onnx:OnnxRuntime", (".onnx",))})
    runtime_class = RUNTIMES.load("onnx")
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One implementation: ``target`` is ``"package.module:Class"``; ``info`` is the registry's own data."""

    target: str
    info: Any = None


class Registry:
    """A table of named implementations of one kind (``what`` names the kind in errors)."""

    def __init__(self, what: str, entries: dict[str, Entry], choices_before: tuple[str, ...] = ()):
        self.what, self.entries = what, dict(entries)
        #: every name a user may give: ``choices_before`` (such as ``auto``) then the implementations
        self.choices = (*choices_before, *self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __getitem__(self, name: str) -> Entry:
        if name not in self.entries:
            raise ConfigError(f"{self.what} {name!r} is not one of: {', '.join(self.choices)}")
        return self.entries[name]

    def load(self, name: str):
        """The class of ``name``, its module imported now; an unknown name is a one-line ConfigError."""
        module, _, cls = self[name].target.partition(":")
        return getattr(importlib.import_module(module), cls)
