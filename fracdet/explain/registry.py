"""Attribution methods by name: one factory for the audit, the CLI and the tests.

The names are what configs and the command line say; the codes are the column prefixes of
the report's tables (SM-25, IG-50...), as in the robust-transfer study.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from fracdet.errors import ConfigError
from fracdet.explain.base import Explainer
from fracdet.explain.captum_methods import (
    DeepLiftExplainer,
    IntegratedGradientsExplainer,
    SaliencyExplainer,
)
from fracdet.explain.gradcam import GradCAMExplainer

__all__ = ["METHODS", "HOOKED", "create_explainer"]

#: method name -> table code
METHODS: dict[str, str] = {
    "saliency": "SM",
    "deeplift": "DL",
    "integrated_gradients": "IG",
    "gradcam": "GC",
    "gradcam++": "GC++",
}


#: methods that need hooks on the model's own layers (Grad-CAM's activations, DeepLIFT's
#: rescale rule on each nonlinearity): inside TorchScript those hooks would silently not fire
HOOKED = frozenset({"deeplift", "gradcam", "gradcam++"})


def _method_name(method: str) -> str:
    """The canonical name for ``method`` given as a name or a table code, any case."""
    key = str(method).strip().lower()
    if key in METHODS:
        return key
    by_code = {code.lower(): name for name, code in METHODS.items()}
    if key in by_code:
        return by_code[key]
    close = difflib.get_close_matches(key, list(METHODS) + list(by_code), n=1)
    hint = f" (did you mean {by_code.get(close[0], close[0])!r}?)" if close else ""
    raise ConfigError(
        f"unknown attribution method {method!r}{hint}; choose from {', '.join(METHODS)}"
    )


def create_explainer(
    method: str,
    model: nn.Module,
    *,
    image_size: int,
    backbone_name: str = "",
    channels: str = "abs_max",
    baseline: float = 0.0,
    ig_steps: int = 32,
    ig_internal_batch_size: int | None = None,
) -> Explainer:
    """An :class:`Explainer` for ``method`` (a name of :data:`METHODS`, or its code) on ``model``.

    ``channels`` and ``baseline`` apply to the captum methods (Grad-CAM maps are per layer,
    not per input channel, and need no baseline); ``image_size`` and ``backbone_name`` let
    Grad-CAM find and check its layer; ``ig_steps`` is Integrated Gradients' ``n_steps`` and
    ``ig_internal_batch_size`` how many interpolated images it runs per pass (``None``: all
    ``n_steps`` times the batch at once).
    """
    name = _method_name(method)
    if name in HOOKED and any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
        raise ConfigError(
            f"{name} hooks the model's layers, which a TorchScript model runs as a compiled "
            "graph where hooks never fire; use saliency or integrated_gradients (pure "
            "gradients), or import the architecture and its state dict"
        )
    if name == "saliency":
        return SaliencyExplainer(model, channels=channels)
    if name == "deeplift":
        return DeepLiftExplainer(model, channels=channels, baseline=baseline)
    if name == "integrated_gradients":
        return IntegratedGradientsExplainer(
            model,
            channels=channels,
            baseline=baseline,
            n_steps=ig_steps,
            internal_batch_size=ig_internal_batch_size,
        )
    return GradCAMExplainer(
        model, image_size=image_size, backbone_name=backbone_name, plus=name == "gradcam++"
    )
