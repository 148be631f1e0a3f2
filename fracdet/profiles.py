"""Named profiles of a pipeline's config: ``demo`` (default, quick) and ``run`` (cpu, gpu).

A pipeline config (a frozen dataclass) carries ``profile`` (the chosen name) and ``profiles``
(``{name: {option: value}}``); :func:`apply_profile` lays the chosen profile's overrides over
the top-level values, each coerced as a YAML value would be, so one file describes the same
pipeline at several scales and the run records which one produced its numbers.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, TypeVar

from fracdet.errors import ConfigError

__all__ = ["NOT_IN_PROFILES", "apply_profile", "check_profiles"]

C = TypeVar("C")

#: Fields a profile may not set: they choose the profile or say where the run goes.
NOT_IN_PROFILES = frozenset({"profile", "profiles", "output", "fresh", "overwrite"})


def check_profiles(cfg: Any) -> None:
    """One clear error for an undefined profile, a profile that is not a mapping, or a key a
    profile may not set (a typo names its close matches)."""
    profiles: dict[str, Any] = cfg.profiles
    if profiles and cfg.profile not in profiles:
        raise ConfigError(
            f"profile {cfg.profile!r} is not defined; profiles: {', '.join(profiles)}"
        )
    fields = [f.name for f in dataclasses.fields(cfg) if f.name not in NOT_IN_PROFILES]
    for name, overrides in profiles.items():
        if not isinstance(overrides, dict):
            raise ConfigError(
                f"profiles.{name} must be a mapping of option: value, got {overrides!r}"
            )
        for key in overrides:
            if key in NOT_IN_PROFILES:
                raise ConfigError(
                    f"profiles.{name}.{key}: set {key!r} at the top level, not in a profile"
                )
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"profiles.{name}: unknown option {key!r}{hint}")


def apply_profile(cfg: C) -> C:
    """``cfg`` with its profile's overrides applied and ``profiles`` emptied (so applying twice
    changes nothing); the result is checked like any config."""
    profiles: dict[str, dict[str, Any]] = cfg.profiles  # type: ignore[attr-defined]
    if not profiles:
        return cfg
    from fracdet.config import build_config

    overrides = profiles[cfg.profile]  # type: ignore[attr-defined]
    top = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)  # type: ignore[arg-type]
        if f.name not in overrides and f.name != "profiles"
    }
    coerced = build_config(type(cfg), None, **top, **overrides, profiles={})  # YAML's coercion
    # build_config skips None (its "not given"); a profile's null means None
    values = {k: None if v is None else getattr(coerced, k) for k, v in overrides.items()}
    return dataclasses.replace(cfg, profiles={}, **values)  # type: ignore[type-var]
