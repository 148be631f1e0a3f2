"""One forward and one backward that serve the model's decision, Saliency and Grad-CAM together.

Saliency is the input gradient of the target logit; Grad-CAM (and Grad-CAM++) weighs the
hooked layer's activations by the gradient of that same target logit with respect to them;
the model's decision is the forward's logits. So one forward with the layer hooked, then one
backward of the target logit down to the input, gives all three: the layer's gradient is
caught on its way through. Run separately, the explainers cost one forward and one backward
each, plus a forward for the decision.

DeepLIFT needs a pass of its own, but not captum's: captum runs the batch and one copy of
the baseline per image as one doubled batch, forward and backward, although the baseline is a
single constant image. :func:`deeplift_one_reference` runs that image once, then the batch
with each ReLU's gradient replaced by the Rescale rule's multiplier against it: about half
the work, for the networks where that rule is all captum applies (ReLU networks such as
timm's ResNets; others go to captum).

The audit calls :func:`decide_and_explain` and :func:`deeplift_one_reference` on every batch.
The separate explainers stay the interface for users and compute the same maps
(``tests/test_explain.py`` holds them equal within float tolerance).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fracdet.explain.base import Explainer, TwoClassLogits, aggregate_channels, resolve_targets
from fracdet.explain.captum_methods import DeepLiftExplainer, SaliencyExplainer
from fracdet.explain.gradcam import GradCAMExplainer, cam_maps

__all__ = [
    "SharedPass",
    "shares_pass",
    "decide_and_explain",
    "target_scores",
    "one_reference_applies",
    "deeplift_one_reference",
]

#: captum's DeepLift default: below this input change the plain gradient is used
DEEPLIFT_EPS = 1e-10

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
    choose_targets: Callable[[torch.Tensor], Sequence[int] | int | None]
    | Sequence[int]
    | int
    | None = None,
) -> SharedPass:
    """The logits of ``images`` and the maps of ``explainers`` (Saliency, Grad-CAM, Grad-CAM++) from one pass.

    ``choose_targets`` is the class to explain per image (as in :meth:`Explainer.attribute`;
    ``None``: class 1), or a function of the float32 logits that returns it (to explain the
    predicted class, decided by this very forward). Without explainers only the forward runs.
    Maps equal what each explainer's :meth:`~Explainer.attribute` returns for the same targets.
    """
    for code, explainer in explainers.items():
        if not shares_pass(explainer, model):
            raise ValueError(
                f"{code}: only Saliency and Grad-CAM explainers bound to this model share its pass, got {type(explainer).__name__}"
            )
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
            activations, gradients = (
                capture.activations[explainer.layer],
                capture.gradients[explainer.layer],
            )
            if explainer.reshape is not None:
                activations, gradients = (
                    explainer.reshape(activations),
                    explainer.reshape(gradients),
                )
            maps[code] = cam_maps(
                activations, gradients, plus=explainer.plus, size=tuple(images.shape[-2:])
            )
    return SharedPass(logits, targets, maps)


def one_reference_applies(explainer: Explainer) -> bool:
    """Whether :func:`deeplift_one_reference` reproduces ``explainer``: DeepLIFT whose every captum-ruled module is a ReLU."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    if not isinstance(explainer, DeepLiftExplainer):
        return False
    return all(
        type(m) is nn.ReLU for m in explainer.ready.modules() if type(m) in SUPPORTED_NON_LINEAR
    )


class _RescaleReLUs:
    """Forward hooks on every ReLU: record the reference's inputs, then route gradients by the Rescale rule.

    In the reference forward each ReLU keeps its input ``x0`` (and output ``y0``). In the
    batch's forward it returns the same output, rewired so that the gradient reaching its
    input is ``grad * (y - y0) / (x - x0)``, or the ReLU's own gradient where
    ``|x - x0| < eps``: captum's rule for ReLU (``nonlinear`` in ``captum.attr._core.deep_lift``).
    """

    def __init__(self, model: nn.Module) -> None:
        self.reference: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.recording = True
        self.handles = [
            m.register_forward_hook(self._hook) for m in model.modules() if type(m) is nn.ReLU
        ]

    def _hook(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> torch.Tensor | None:
        x = inputs[0]
        if self.recording:
            if module in self.reference:
                raise RuntimeError(
                    f"{module} runs twice per forward: DeepLIFT needs one module per use"
                )
            self.reference[module] = (x.detach(), output.detach())
            return None
        x0, y0 = self.reference[module]
        with torch.no_grad():
            delta_in = x - x0
            multiplier = torch.where(
                delta_in.abs() < DEEPLIFT_EPS, (x > 0).to(x.dtype), (output - y0) / delta_in
            )
        return output.detach() + multiplier * (
            x - x.detach()
        )  # the ReLU's value, the rule's gradient

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def deeplift_one_reference(
    explainer: DeepLiftExplainer,
    images: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
) -> np.ndarray:
    """``explainer.attribute(images, target)`` (captum's DeepLIFT, Rescale rule) with the baseline image run once.

    Only where :func:`one_reference_applies`: the ReLUs are then the only modules captum
    treats specially, and every other layer passes gradients as autograd does.
    """
    targets = resolve_targets(target, len(images))
    model = TwoClassLogits(explainer.ready_model(images))
    rules = _RescaleReLUs(model)
    rules.reference = {}
    try:
        with torch.no_grad():
            # two copies of the baseline, not one: for a single image oneDNN picks other kernels,
            # whose last-bit differences flip the multiplier where activations tie (x = x0 = 0)
            model(
                torch.full(
                    (2, *images.shape[1:]),
                    explainer.baseline,
                    dtype=images.dtype,
                    device=images.device,
                )
            )
        rules.reference = {module: (x0[:1], y0[:1]) for module, (x0, y0) in rules.reference.items()}
        rules.recording = False
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            logits = model(x)
            scores = logits.gather(1, torch.as_tensor(targets, device=x.device).view(-1, 1))
            (grad,) = torch.autograd.grad(scores.sum(), x)
    finally:
        rules.remove()
    return aggregate_channels((images.detach() - explainer.baseline) * grad, explainer.channels)
