"""One error type for everything a user can get wrong.

The CLI turns a :class:`FracdetError` into one line on stderr and a non-zero exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FracdetError",
    "DataError",
    "ImageError",
    "OutputExistsError",
    "OutputBusyError",
    "ConfigError",
]


class FracdetError(Exception):
    """Base class of every error fracdet raises on purpose for bad input.

    ``path`` names the file at fault (when there is one) so the one-line message can start
    with it.
    """

    exit_code = 1

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class DataError(FracdetError):
    """An annotation file, split file or dataset layout cannot be used."""


class ImageError(DataError):
    """An image cannot be read: corrupt, truncated, unsupported or empty."""


class OutputExistsError(FracdetError):
    """An output already exists and ``overwrite`` was not asked for."""


class OutputBusyError(FracdetError):
    """Another run, still running, is writing into the output folder (its lock is held)."""


class ConfigError(FracdetError):
    """A configuration value is missing, unknown or out of range."""
