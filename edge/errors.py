"""maskwatch's errors: one small family, each also a builtin so callers can catch either.

Every message is one line and names the file, field or device at fault.
"""


class MaskwatchError(Exception):
    """Base of every error maskwatch raises on purpose."""


class ConfigError(MaskwatchError, ValueError):
    """A setting, option or config key is wrong."""


class ModelError(MaskwatchError, ValueError):
    """A model file is missing, corrupt, or disagrees with its manifest entry."""


class ModelHashMismatch(ModelError):
    """A model file's sha256 differs from the manifest's."""


class RuntimeUnavailable(MaskwatchError, ImportError):
    """An inference runtime, delegate or provider cannot be loaded here."""


class InputError(MaskwatchError, ValueError):
    """An image, folder or annotation given as input cannot be used."""


class ConversionError(MaskwatchError, RuntimeError):
    """The conversion toolchain could not produce or verify a model."""


#: The most of a user's value an error message repeats: a 50 MB value must not make a 50 MB error.
ECHO_MAX = 80


def shorten(text: str, limit: int = ECHO_MAX) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def one_line(exc) -> str:
    """A pydantic ValidationError as one line: ``field.path: message (got value)``, first error only."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    got = f" (got {shorten(repr(err['input']))})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
    more = f"; and {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
    return f"{where}: {err['msg']}{got}{more}"
