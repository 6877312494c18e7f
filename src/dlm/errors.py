"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class DLMError(Exception):
    """Base class: the message says what went wrong and what to do."""


class ConfigError(DLMError):
    """A setting is missing, unknown or out of range; `field` names it where one setting
    is at fault (the server answers with it as the error's `param`)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class DataError(DLMError):
    """A data file is missing, empty or has a bad row (the message names file and line)."""


class CheckpointError(DLMError):
    """A checkpoint is missing, incomplete or from an incompatible version."""


def first_line(exc: BaseException) -> str:
    """An exception's first line, at most 200 characters (for a one-line error)."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class TextError(ConfigError):
    """Text that is not well-formed Unicode (an unpaired surrogate); `field` names the
    argument, request field or row it came in (`dlm.util.wellformed`)."""
