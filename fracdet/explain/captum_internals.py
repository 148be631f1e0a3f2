"""The captum internals fracdet relies on, imported here and nowhere else.

captum's DeepLIFT keeps its per-module rules in a private table
(``captum.attr._core.deep_lift.SUPPORTED_NON_LINEAR``: module type -> multiplier rule; the
Rescale rule is its function ``nonlinear``). fracdet must know that table: a module captum
hooks must run once per forward (reused ones are split), activations without a rule get a
warning, and the one-reference DeepLIFT of :mod:`fracdet.explain.batch` reproduces captum's
only where every hooked module is a ReLU under the Rescale rule. A captum release that
renames either raises :class:`CaptumInternalsError` naming what is gone, and
``tests/test_explain.py`` fails with that message.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from fracdet.errors import FracdetError

__all__ = [
    "CaptumInternalsError",
    "deeplift_rules",
    "deeplift_rescale_rule",
    "deeplift_hooks",
    "rescale_relus_only",
    "deeplift_eps",
]

_DEEP_LIFT = "captum.attr._core.deep_lift"


class CaptumInternalsError(FracdetError):
    """The installed captum lacks a private name fracdet's DeepLIFT relies on."""


def _private(name: str) -> Any:
    """``name`` from captum's DeepLIFT module, or one clear error saying which captum lacks it."""
    try:
        return getattr(importlib.import_module(_DEEP_LIFT), name)
    except (ImportError, AttributeError) as exc:
        import captum

        raise CaptumInternalsError(
            f"captum {getattr(captum, '__version__', '?')} has no {_DEEP_LIFT}.{name}, which "
            "fracdet's DeepLIFT relies on: install a captum that has it (tested with 0.9.0) or "
            "update fracdet/explain/captum_internals.py"
        ) from exc


def deeplift_rules() -> Mapping[type[nn.Module], Callable[..., Any]]:
    """captum DeepLIFT's module type -> multiplier rule (``SUPPORTED_NON_LINEAR``)."""
    rules = _private("SUPPORTED_NON_LINEAR")
    if not isinstance(rules, Mapping) or nn.ReLU not in rules:
        raise CaptumInternalsError(
            f"{_DEEP_LIFT}.SUPPORTED_NON_LINEAR is no longer a table of module types with a rule "
            "for nn.ReLU; update fracdet/explain/captum_internals.py"
        )
    return rules


def deeplift_rescale_rule() -> Callable[..., Any]:
    """The Rescale rule (``nonlinear``): ``grad * Δout / Δin``; the gradient if ``|Δin| < eps``."""
    return _private("nonlinear")


def deeplift_hooks(module: nn.Module) -> bool:
    """Whether captum's DeepLIFT replaces ``module``'s gradient by one of its rules."""
    return type(module) in deeplift_rules()


def rescale_relus_only(model: nn.Module) -> bool:
    """Whether every module captum's DeepLIFT hooks in ``model`` is a ReLU ruled by Rescale."""
    rules = deeplift_rules()
    if rules[nn.ReLU] is not deeplift_rescale_rule():
        return False
    return all(type(m) is nn.ReLU for m in model.modules() if type(m) in rules)


def deeplift_eps() -> float:
    """captum DeepLIFT's default ``eps`` (public: ``DeepLift(model, eps=...)``).

    Where an input changes by less, the Rescale rule keeps the plain gradient.
    """
    from captum.attr import DeepLift

    return float(inspect.signature(DeepLift.__init__).parameters["eps"].default)
