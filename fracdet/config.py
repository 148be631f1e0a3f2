"""Typed configs: dataclass defaults, overridden by a YAML file, overridden by the CLI.

Unknown keys are errors that name the close matches, so a typo never silently falls back to
a default. A *preset* (``preset: NAME`` at the top) holds one section per command, named by
the config class's ``config_section``, so one file can describe a whole protocol (convert,
train-cls, audit) and each command reads its own part.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fracdet.errors import ConfigError, FracdetError

__all__ = ["build_config", "config_file", "load_yaml", "yaml_error_line", "PRESET_KEY"]

C = TypeVar("C")

#: The top-level key that marks a YAML file as a preset of per-command sections.
PRESET_KEY = "preset"


def load_yaml(
    path: str | Path, *, error: type[FracdetError] = ConfigError, what: str = "config file"
) -> dict[str, Any]:
    """A YAML mapping (an empty file is an empty mapping); problems raise ``error`` in one line."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{what} not found", path) from exc
    except IsADirectoryError as exc:
        raise error(f"{what} is a folder, expected a YAML file", path) from exc
    except OSError as exc:
        raise error(f"cannot read {what} ({exc.strerror or exc})", path) from exc
    except UnicodeDecodeError as exc:
        raise error(f"not valid YAML (not UTF-8 text, byte {exc.start})", path) from exc
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML ({yaml_error_line(exc)})", path) from exc
    except RecursionError as exc:
        raise error("not valid YAML (nested too deeply)", path) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise error(f"{what} must be a mapping of key: value", path)
    if not all(isinstance(key, str) for key in doc):
        bad = next(key for key in doc if not isinstance(key, str))
        raise error(f"{what} keys must be names, got {bad!r}", path)
    return doc


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line error as one line: the problem and where (line and column, 1-based)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context = f" ({exc.context})" if exc.context else ""
        return " ".join(f"{where}{exc.problem}{context}".split())
    return " ".join(str(exc).split()) or type(exc).__name__


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Turn YAML/CLI values into the field's type (paths, enums, tuples, optionals)."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(value, options[0], key) if len(options) == 1 else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of key: value, got {value!r}")
        return dict(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, key) for v in value)
    if isinstance(hint, type):
        try:
            if issubclass(hint, enum.Enum):
                return hint(value.value if isinstance(value, enum.Enum) else value)
            if hint is Path:
                return Path(value)
            if hint in (int, float) and not isinstance(value, bool):
                return hint(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{key}: {value!r} is not a valid {getattr(hint, '__name__', hint)}"
            ) from exc
    return value


def config_file(named: str | Path | None, default: str | Path | None = None) -> Path | None:
    """The YAML file a command reads: the one the user named, else ``default`` when it exists.

    A named file is returned even when missing, so :func:`build_config` refuses it: a typo in
    ``--config`` must never fall back to the defaults silently. Only the command's own default
    file is optional.
    """
    if named is not None:
        return Path(named)
    if default is not None and Path(default).is_file():
        return Path(default)
    return None


def _section(cls: type, doc: dict[str, Any], file: str | Path) -> dict[str, Any]:
    """The keys of ``doc`` for ``cls``: the whole file, or a preset's section for ``cls``.

    A preset without a section for this command is an error naming the sections it has, so a
    misspelt section never passes silently as "no options".
    """
    if PRESET_KEY not in doc:
        return doc
    name = getattr(cls, "config_section", None)
    sections = sorted(k for k in doc if k != PRESET_KEY)
    if name is None or name not in doc:
        what = f"{name!r} section" if name else "section for this command"
        raise ConfigError(
            f"preset {doc[PRESET_KEY]!r} has no {what} (sections: {', '.join(sections) or 'none'})",
            file,
        )
    section = doc[name]
    if section is None:
        return {}
    if not isinstance(section, dict) or not all(isinstance(key, str) for key in section):
        raise ConfigError(f"preset section {name!r} must be a mapping of key: value", file)
    return section


def build_config(cls: type[C], file: str | Path | None = None, /, **overrides: Any) -> C:
    """``cls`` from its defaults, then ``file`` (YAML, or a preset's section), then non-``None``
    ``overrides``."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if file is not None:
        for key, value in _section(cls, load_yaml(file), file).items():
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=3)
                hint = (
                    f"; did you mean {', '.join(close)}?"
                    if close
                    else f"; known: {', '.join(fields)}"
                )
                raise ConfigError(f"unknown option {key!r}{hint}", file)
            values[key] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    hints = typing.get_type_hints(cls)
    coerced = {k: _coerce(v, hints[k], k) for k, v in values.items()}
    missing = [
        n
        for n, f in fields.items()
        if n not in coerced
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required option(s): {', '.join(missing)}")
    return cls(**coerced)
