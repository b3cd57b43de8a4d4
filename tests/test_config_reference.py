"""docs/configuration.md is generated from the config models and must stay equal to them."""
import typing
from pathlib import Path

from pydantic import BaseModel

from maskwatch.edge.config import Config
from maskwatch.edge.config_reference import reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_committed_reference_matches_the_config_models():
    assert DOC.read_text() == reference(), (
        "docs/configuration.md is stale: run python -m maskwatch.edge.config_reference > docs/configuration.md")


def _keys(model, prefix=""):
    """Every leaf key of a config model, dotted, with its field; sections (models, or Model | None) recursed."""
    for name, field in model.model_fields.items():
        section = next((t for t in (field.annotation, *typing.get_args(field.annotation))
                        if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if section is None:
            yield prefix + name, field
        else:
            yield from _keys(section, f"{prefix}{name}.")


def test_every_key_has_a_row_with_its_description():
    text = reference()
    keys = list(_keys(Config))
    assert {"events.mqtt.host", "signal.red_pin", "classifier.rule"} <= {k for k, _ in keys}
    for dotted, field in keys:
        assert f"| `{dotted}` |" in text, dotted
        assert field.description, f"{dotted} has no description"
