"""Many attribution methods on one batch: :func:`explain_batch`, and the passes it shares.

Callers (the audit) hand over every explainer and get the model's decision, every map and
every method's by-products (Integrated Gradients' convergence delta) without knowing which
method runs how. Each runs as its explainer's :meth:`~fracdet.explain.base.Explainer.explain`
(captum, pytorch-grad-cam), except where sharing a pass gives the same maps for less work:

* **Decision, Saliency and Grad-CAM in one forward and one backward.** Saliency is the input
  gradient of the target logit; Grad-CAM (and ++) weighs the hooked layer's activations by the
  gradient of that same logit; the decision is the forward's logits. So one forward with the
  layer hooked (pytorch-grad-cam's ``ActivationsAndGradients``), then one backward of the
  target logit to the input, serves all three; the CAM comes from pytorch-grad-cam's own
  functions (:func:`~fracdet.explain.gradcam.cam_maps`). Run separately they cost a forward
  and a backward each, plus the decision's forward.
* **DeepLIFT with its baseline run once per batch.** captum runs the batch and one copy of the
  constant baseline per image as one doubled batch. :func:`deeplift_one_reference` runs that
  image once, then the batch with each ReLU's gradient replaced by captum's Rescale
  multiplier against it, for the networks where that rule is all captum applies
  (:func:`one_reference_applies`: ReLU networks such as timm's ResNets; others go to captum).

Why (measured, ``benchmarks/README.md``, resnet18 at 224 px, 32 images, 2 CPU cores): the
shared pass took 4.45 s where Saliency and Grad-CAM alone took 3.16 s + 3.06 s before any
decision forward, and the one-reference DeepLIFT 7.09 s where captum's took 11.88 s; the
whole audit ran at 0.94x the cost of calling the explainers one by one. The maps equal the
separate explainers' within float tolerance (``tests/test_explain.py``).

Integrated Gradients shares nothing: its delta is captum's own (``return_convergence_delta``),
two forwards of the batch beside its ``n_steps`` forward-backward passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fracdet.explain.base import Explainer, TwoClassLogits, aggregate_channels, resolve_targets
from fracdet.explain.captum_internals import deeplift_eps, rescale_relus_only
from fracdet.explain.captum_methods import DeepLiftExplainer, SaliencyExplainer
from fracdet.explain.gradcam import GradCAMExplainer, cam_maps

__all__ = ["ExplainedBatch", "explain_batch", "one_reference_applies", "deeplift_one_reference"]

#: the class to explain per image, or a function of the decision's float32 logits giving it
Targets = Callable[[torch.Tensor], Sequence[int] | int | None] | Sequence[int] | int | None


@dataclass
class ExplainedBatch:
    """The decision and the explanations of one batch.

    ``logits``: the model's float32 outputs (detached); ``targets``: the class explained per
    image; ``maps``: ``(B, H, W)`` float32 maps by method code; ``extras``: each code's
    by-products by name (``extras["IG"]["delta"]``, ``(B,)``), empty for most methods.
    """

    logits: torch.Tensor
    targets: list[int]
    maps: dict[str, np.ndarray]
    extras: dict[str, dict[str, np.ndarray]]


def explain_batch(
    explainers: Mapping[str, Explainer],
    model: nn.Module,
    images: torch.Tensor,
    targets: Targets = None,
    *,
    stage: Callable[[str], AbstractContextManager[object]] | None = None,
) -> ExplainedBatch:
    """``model``'s decision on ``images`` and the maps of ``explainers`` (code -> explainer).

    ``targets`` as in :meth:`Explainer.attribute` (``None``: class 1), or a function of the
    decision's logits (to explain the predicted class of this very forward). The decision's
    forward always runs, with or without explainers. ``stage(name)``, if given, wraps each
    step: ``forward+SM+GC`` (the codes sharing that pass) and ``attr:<code>`` for the others.
    """
    stage = stage or (lambda _name: nullcontext())
    riding = {code: e for code, e in explainers.items() if _rides_gradient_pass(e, model)}
    with stage("+".join(["forward", *riding])):
        logits, chosen, shared = _gradient_pass(model, images, riding, targets)
    maps: dict[str, np.ndarray] = {}
    extras: dict[str, dict[str, np.ndarray]] = {}
    for code, explainer in explainers.items():
        if code in riding:
            maps[code], extras[code] = shared[code], {}
            continue
        with stage(f"attr:{code}"):
            if one_reference_applies(explainer):
                maps[code], extras[code] = deeplift_one_reference(explainer, images, chosen), {}
            else:
                maps[code], extras[code] = explainer.explain(images, chosen)
    return ExplainedBatch(logits, chosen, maps, extras)


def _rides_gradient_pass(explainer: Explainer, model: nn.Module) -> bool:
    """Saliency and Grad-CAM bound to ``model`` itself: their maps come from its decision pass."""
    return isinstance(explainer, (SaliencyExplainer, GradCAMExplainer)) and explainer.model is model


def _target_scores(logits: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
    """Each image's explained score: its class logit; a binary model's ``z`` (1) or ``-z`` (0).

    The score :class:`~fracdet.explain.base.TwoClassLogits` (captum) and
    :class:`~fracdet.explain.gradcam.ClassScore` (Grad-CAM) differentiate.
    """
    index = torch.as_tensor(list(targets), device=logits.device)
    if logits.ndim == 1:
        return torch.where(index == 1, logits, -logits)
    return logits.gather(1, index.view(-1, 1)).squeeze(1)


def _gradient_pass(
    model: nn.Module, images: torch.Tensor, riding: Mapping[str, Explainer], targets: Targets
) -> tuple[torch.Tensor, list[int], dict[str, np.ndarray]]:
    """The decision's forward and, for ``riding``, one backward: logits, targets, maps."""
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

    cams = {code: e for code, e in riding.items() if isinstance(e, GradCAMExplainer)}
    layers = {id(e.layer): (e.layer, e.reshape) for e in cams.values()}
    captures = {
        key: ActivationsAndGradients(model, [layer], reshape, detach=True)
        for key, (layer, reshape) in layers.items()
    }
    was_training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(bool(riding)):
            x = images.detach().clone().requires_grad_(bool(riding))
            raw = model(x)
            logits = raw.detach().float()
            chosen = resolve_targets(targets(logits) if callable(targets) else targets, len(x))
            if not riding:
                return logits, chosen, {}
            (input_grad,) = torch.autograd.grad(_target_scores(raw, chosen).sum(), x)
        caught = {key: (c.activations[0], c.gradients[0]) for key, c in captures.items()}
    finally:
        for capture in captures.values():
            capture.release()
        model.train(was_training)
    maps: dict[str, np.ndarray] = {}
    for code, explainer in riding.items():
        if isinstance(explainer, GradCAMExplainer):
            activations, gradients = caught[id(explainer.layer)]
            maps[code] = cam_maps(
                activations, gradients, plus=explainer.plus, size=tuple(images.shape[-2:])
            )
        else:
            maps[code] = aggregate_channels(input_grad, explainer.channels)
    return logits, chosen, maps


def one_reference_applies(explainer: Explainer) -> bool:
    """Whether :func:`deeplift_one_reference` reproduces ``explainer``.

    True for DeepLIFT whose every module captum gives a rule is a ReLU under the Rescale rule.
    """
    return isinstance(explainer, DeepLiftExplainer) and rescale_relus_only(explainer.ready)


class _RescaleReLUs:
    """Forward hooks on every ReLU: record the reference's inputs, then route gradients by Rescale.

    In the reference forward each ReLU keeps its input ``x0`` (and output ``y0``). In the
    batch's forward it returns the same output, rewired so that the gradient reaching its
    input is ``grad * (y - y0) / (x - x0)``, or the ReLU's own gradient where
    ``|x - x0| < eps``: captum's Rescale rule (``nonlinear``, see
    :mod:`~fracdet.explain.captum_internals`) with the reference's half computed once.
    """

    def __init__(self, model: nn.Module) -> None:
        self.reference: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self.recording = True
        self.eps = deeplift_eps()
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
                delta_in.abs() < self.eps, (x > 0).to(x.dtype), (output - y0) / delta_in
            )
        # the ReLU's value, the rule's gradient
        return output.detach() + multiplier * (x - x.detach())

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def deeplift_one_reference(
    explainer: DeepLiftExplainer,
    images: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
) -> np.ndarray:
    """``explainer.attribute(images, target)`` (captum's DeepLIFT) with the baseline image run once.

    Only where :func:`one_reference_applies`: the ReLUs are then the only modules captum
    treats specially, and every other layer passes gradients as autograd does.
    """
    targets = resolve_targets(target, len(images))
    model = TwoClassLogits(explainer.ready_model(images))
    rules = _RescaleReLUs(model)
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
