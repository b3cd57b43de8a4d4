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
