"""One forward and one backward that serve the model's decision, Saliency and Grad-CAM together.

Saliency is the input gradient of the target logit; Grad-CAM (and Grad-CAM++) weighs the
hooked layer's activations by the gradient of that same target logit with respect to them;
the model's decision is the forward's logits. So one forward with the layer hooked, then one
backward of the target logit down to the input, gives all three: the layer's gradient is
caught on its way through. Run separately, the explainers cost one forward and one backward
each, plus a forward for the decision.

The audit calls :func:`decide_and_explain` on every batch. The separate explainers stay the
interface for users and compute the same maps (``tests/test_explain.py`` holds them equal
within float tolerance). Other methods (DeepLIFT, Integrated Gradients) need passes of their
own and are not accepted here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fracdet.explain.base import Explainer, aggregate_channels, resolve_targets
from fracdet.explain.captum_methods import SaliencyExplainer
from fracdet.explain.gradcam import GradCAMExplainer, cam_maps

__all__ = ["SharedPass", "shares_pass", "decide_and_explain", "target_scores"]

logger = logging.getLogger(__name__)


def shares_pass(explainer: Explainer, model: nn.Module) -> bool:
    """Whether ``explainer`` can ride on :func:`decide_and_explain`'s pass over ``model``."""
    return isinstance(explainer, (SaliencyExplainer, GradCAMExplainer)) and explainer.model is model


def target_scores(logits: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
    """Each image's explained score: a binary model's ``z`` for class 1 and ``-z`` for class 0; else the class logit.

    The same score :class:`~fracdet.explain.base.TwoClassLogits` (captum) and
    :class:`~fracdet.explain.gradcam.ClassScore` (Grad-CAM) differentiate.
    """
    index = torch.as_tensor(list(targets), device=logits.device)
    if logits.ndim == 1:
        return torch.where(index == 1, logits, -logits)
    return logits.gather(1, index.view(-1, 1)).squeeze(1)


@dataclass
class SharedPass:
    """What one pass gave: float32 ``logits`` (detached), the ``targets`` explained, and ``(B, H, W)`` maps by code."""

    logits: torch.Tensor
    targets: list[int]
    maps: dict[str, np.ndarray]


class _LayerCapture:
    """Forward hooks on the Grad-CAM layers that keep each layer's output and, in the backward, its gradient."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        self.activations: dict[nn.Module, torch.Tensor] = {}
        self.gradients: dict[nn.Module, torch.Tensor] = {}
        self.handles = [layer.register_forward_hook(self._hook) for layer in layers]

    def _hook(self, module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return
        self.activations[module] = output.detach()
        output.register_hook(lambda grad: self.gradients.__setitem__(module, grad.detach()))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def decide_and_explain(
    model: nn.Module,
    images: torch.Tensor,
    explainers: Mapping[str, Explainer],
    choose_targets: Callable[[torch.Tensor], Sequence[int] | int | None] | Sequence[int] | int | None = None,
) -> SharedPass:
    """The logits of ``images`` and the maps of ``explainers`` (Saliency, Grad-CAM, Grad-CAM++) from one pass.

    ``choose_targets`` is the class to explain per image (as in :meth:`Explainer.attribute`;
    ``None``: class 1), or a function of the float32 logits that returns it (to explain the
    predicted class, decided by this very forward). Without explainers only the forward runs.
    Maps equal what each explainer's :meth:`~Explainer.attribute` returns for the same targets.
    """
    for code, explainer in explainers.items():
        if not shares_pass(explainer, model):
            raise ValueError(f"{code}: only Saliency and Grad-CAM explainers bound to this model share its pass, got {type(explainer).__name__}")
    cams = {code: e for code, e in explainers.items() if isinstance(e, GradCAMExplainer)}
    layers = list({id(e.layer): e.layer for e in cams.values()}.values())
    was_training = model.training
    model.eval()
    capture = _LayerCapture(layers)
    try:
        with torch.set_grad_enabled(bool(explainers)):
            x = images.detach().clone().requires_grad_(bool(explainers))
            raw = model(x)
            logits = raw.detach().float()
            chosen = choose_targets(logits) if callable(choose_targets) else choose_targets
            targets = resolve_targets(chosen, len(images))
            if not explainers:
                return SharedPass(logits, targets, {})
            (input_grad,) = torch.autograd.grad(target_scores(raw, targets).sum(), x)
    finally:
        capture.remove()
        model.train(was_training)
    maps: dict[str, np.ndarray] = {}
    for code, explainer in explainers.items():
        if isinstance(explainer, SaliencyExplainer):
            maps[code] = aggregate_channels(input_grad, explainer.channels)
        else:
            activations, gradients = capture.activations[explainer.layer], capture.gradients[explainer.layer]
            if explainer.reshape is not None:
                activations, gradients = explainer.reshape(activations), explainer.reshape(gradients)
            maps[code] = cam_maps(activations, gradients, plus=explainer.plus, size=tuple(images.shape[-2:]))
    return SharedPass(logits, targets, maps)
