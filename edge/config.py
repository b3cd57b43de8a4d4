"""maskwatch's one validated configuration: a TOML file plus command-line overrides.

Every section is a pydantic model with ``extra="forbid"``: a mistyped key is an
error naming the key, never a silent default. Example ``maskwatch.toml``::

    device_id = "pole-7"

    [source]
    spec = "0"                 # camera index, /dev/videoN, rtsp://…, a video file, images, picamera2

    [signal]
    backend = "gpiozero"
    red_pin = 17
    buzzer_pin = 27

    [events.mqtt]
    host = "broker.local"
"""
from __future__ import annotations

import logging
import socket
import tomllib
from urllib.parse import urlparse
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .classifier import ClassifierConfig
from .decision import DecisionConfig
from .detector import DetectorConfig
from .errors import ConfigError, one_line, shorten
from .events import JsonlConfig, MqttConfig
from .gpio import SignalConfig
from .tracker import TrackerConfig

log = logging.getLogger(__name__)

#: Old key -> its key now: still read, with a one-line deprecation warning (see the CHANGELOG).
DEPRECATED_KEYS = {("signal", "min_on_s"): ("decision", "min_on_s"),
                   ("signal", "cooldown_s"): ("decision", "cooldown_s")}
#: Shortest wait between reopen attempts: a zero back-off would spin (tens of thousands of tries a second).
MIN_BACKOFF_S = 0.1
#: A device id is part of every event and MQTT topic: short, and no topic wildcards or separators.
DEVICE_ID_MAX = 64
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._-]+$"
#: The built-in clip that needs no camera and no data: the shipped photo panned across a frame.
SAMPLE_SOURCE = "sample"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SourceConfig(_Section):
    spec: str = Field(SAMPLE_SOURCE, description="camera index or /dev/videoN, rtsp:// or http:// URL, video file, image folder or glob, picamera2, or 'sample'")
    width: int | None = Field(None, gt=0, description="requested camera width")
    height: int | None = Field(None, gt=0, description="requested camera height")
    fps: float | None = Field(None, gt=0, description="requested camera frame rate")
    reconnect_backoff_s: list[Annotated[float, Field(ge=MIN_BACKOFF_S, le=3600)]] = Field(
        [1, 2, 4, 8, 16, 30], min_length=1, description=f"waits between reopen attempts of a lost live source "
                                                        f"(each {MIN_BACKOFF_S} to 3600 s; the last repeats)")
    max_wait_s: float | None = Field(None, gt=0, le=86400,
                                     description="give up (exit 2) after this many seconds without a frame from a "
                                                 "live source, at start or after a loss; unset: retry forever, as a "
                                                 "service should")
    stale_after_s: float = Field(3.0, gt=0, description="seconds without a frame after which every track ends, the "
                                                        "lights and buzzer go idle (off) and a no_frames status event is published")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="further options for the chosen kind of source: camera fourcc (e.g. 'MJPG') and props "
                    "({OpenCV property id = value}); stream timeout (s) and props; video live and props; picamera2 "
                    "camera (index) and preview_size ([w, h] main stream, only drawn by a preview); sample frames")

    @model_validator(mode="after")
    def _options_are_not_repeated(self):
        repeated = sorted({"width", "height", "fps"} & set(self.options))
        if repeated:
            raise ValueError(f"options.{repeated[0]}: set source.{repeated[0]} instead")
        props = self.options.get("props")
        if props is not None:
            try:
                self.options["props"] = {int(key): float(value) for key, value in dict(props).items()}
            except (TypeError, ValueError):
                raise ValueError("options.props: give {OpenCV property id = number}, e.g. {\"15\" = -6}") from None
        return self


class EventsConfig(_Section):
    jsonl: JsonlConfig | None = Field(None, description="JSON Lines event log")
    mqtt: MqttConfig | None = Field(None, description="MQTT publishing")
    summary_interval_s: float = Field(60.0, gt=0, description="seconds between summary events")


class PreviewConfig(_Section):
    target: str | None = Field(None, description="annotated video file, or http://HOST:PORT for MJPEG")
    password: str | None = Field(None, description="required when the MJPEG preview listens off localhost")
    fps: float | None = Field(None, gt=0, le=240, description="frame rate written to a preview video file "
                                                             "(default: the source's own rate, else 15)")

    @model_validator(mode="after")
    def _target_is_a_file_or_http(self):
        target = self.target or ""
        if "://" in target and not target.startswith("http://"):
            raise ValueError(f"target {target!r}: give a video file path or http://HOST:PORT (MJPEG; no TLS)")
        if target.startswith("http://"):
            try:
                port = urlparse(target).port
            except ValueError:
                port = 0
            if port == 0:
                raise ValueError(f"target {target!r}: the port must be 1 to 65535")
        return self


class PrivacyConfig(_Section):
    save_crops: bool = Field(False, description="write each classified face crop to crops_dir (off: no face image leaves memory)")
    crops_dir: Path | None = Field(None, description="where face crops go when save_crops is on")

    @model_validator(mode="after")
    def _crops_dir_given(self):
        if self.save_crops and self.crops_dir is None:
            raise ValueError("save_crops needs crops_dir")
        return self


class Config(_Section):
    """The whole runtime configuration."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="maskwatch")

    device_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=DEVICE_ID_MAX,
                           pattern=DEVICE_ID_PATTERN,
                           description=f"names this device in events and MQTT topics: up to {DEVICE_ID_MAX} letters, "
                                       "digits, '.', '_' or '-'")
    models_dir: Path | None = Field(None, description="models folder (default: the shipped models)")
    source: SourceConfig = Field(default_factory=SourceConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    signal: SignalConfig = Field(default_factory=SignalConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    preview: PreviewConfig = Field(default_factory=PreviewConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {key} is not a section")
        tree = node
    tree[leaf] = value


def _move_deprecated(tree: dict, where: str) -> None:
    """Each of :data:`DEPRECATED_KEYS` found in ``tree`` moved to its key now, with a warning;
    both spellings at once is an error."""
    for (section, key), (new_section, new_key) in DEPRECATED_KEYS.items():
        old = tree.get(section)
        if not isinstance(old, dict) or key not in old:
            continue
        new = tree.setdefault(new_section, {})
        if not isinstance(new, dict):
            continue  # validation names the bad section
        if new_key in new:
            raise ConfigError(f"{where}: {section}.{key} and {new_section}.{new_key} both given; "
                              f"keep {new_section}.{new_key}")
        new[new_key] = old.pop(key)
        log.warning("%s: %s.%s is deprecated; use %s.%s", where, section, key, new_section, new_key)


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value``; the value is read as TOML (numbers, booleans, strings, lists), else as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {shorten(repr(text))}: expected key.path=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise ConfigError(f"--set {shorten(key)}: the value is nested too deeply") from None
    return key, value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """The config from ``path`` (optional) with dotted overrides applied; ConfigError naming the key."""
    tree: dict = {}
    where = str(path) if path else "config"
    if path:
        try:
            tree = tomllib.loads(Path(path).read_text())
        except RecursionError:
            raise ConfigError(f"{path}: nested too deeply to be a maskwatch config") from None
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(tree, key, value)
    _move_deprecated(tree, where)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {one_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a maskwatch config") from None
