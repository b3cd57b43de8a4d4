"""The configuration reference (``docs/configuration.md``), generated from the config models.

Every section of :class:`maskwatch.edge.config.Config` becomes a table of its keys with type,
default and the field's own description, so the reference cannot say what the code does not.
``python -m maskwatch.edge.config_reference > docs/configuration.md`` rewrites it; a test keeps
the committed file equal to this output.
"""
from __future__ import annotations

import types
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .config import Config

HEADER = """# Configuration reference

One TOML file (`maskwatch run --config FILE`), any key overridden with `--set section.key=value`.
Every section rejects an unknown or mistyped key in one line naming it. This page is generated from
the config models (`python -m maskwatch.edge.config_reference > docs/configuration.md`); a test
keeps it in sync.
"""


def _section_model(annotation) -> type[BaseModel] | None:
    """The BaseModel a field holds (directly or as ``Model | None``), else None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_name(annotation) -> str:
    """``int``, ``float or none``, ``one of "a", "b"``, ``list[str]``: the annotation as a reader says it."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(f'"{a}"' for a in args)
    if args and type(None) in args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in rest) + " or none"
    if typing.get_origin(annotation) is typing.Annotated:
        return _type_name(args[0])
    if typing.get_origin(annotation) is list:
        return f"list of {_type_name(args[0])}"
    if args:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.default_factory is not None:
        return "(computed)" if field.default_factory.__name__ == "gethostname" else "(see section)"
    if field.default is PydanticUndefined:
        return "required"
    return "none" if field.default is None else f"`{field.default!r}`".replace("'", '"')


def _rows(model: type[BaseModel], prefix: str, sections: list) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        nested = _section_model(field.annotation)
        key = f"{prefix}{name}"
        if nested is not None:
            sections.append((key, nested))
            continue
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
    return rows


def reference() -> str:
    """The whole reference as markdown."""
    parts = [HEADER]
    sections: list = [("", Config)]
    while sections:
        key, model = sections.pop(0)
        found: list = []
        rows = _rows(model, f"{key}." if key else "", found)
        sections[0:0] = found
        title = f"[{key}]" if key else "Top level"
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        parts += [f"## {title}", ""] + ([doc, ""] if doc else [])
        if rows:
            parts += ["| key | type | default | description |", "|---|---|---|---|", *rows, ""]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
