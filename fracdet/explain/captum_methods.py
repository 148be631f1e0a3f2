"""Saliency, DeepLIFT and Integrated Gradients (captum) behind the ``Explainer`` interface.

Attributions are taken with respect to the pixel-space input the classifier receives, so a
grey ``(B, 1, H, W)`` batch gets ``(B, 1, H, W)`` attributions (the model expands grey to
three channels inside) and a channel aggregation turns them into ``(B, H, W)`` maps. The
baseline of DeepLIFT and IG is one pixel value broadcast to the input (0.0, a black image,
by default). A binary model is explained through :class:`TwoClassLogits`: target 1 is the
fracture logit ``z``, target 0 is ``-z``.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from fracdet.errors import ConfigError
from fracdet.explain.base import (
    CHANNEL_AGGREGATIONS,
    Explainer,
    TwoClassLogits,
    aggregate_channels,
    resolve_targets,
)
from fracdet.explain.captum_internals import deeplift_hooks
from fracdet.nnutil import replace_module

__all__ = [
    "SaliencyExplainer",
    "DeepLiftExplainer",
    "IntegratedGradientsExplainer",
    "deeplift_ready_copy",
]

logger = logging.getLogger(__name__)


def _check_channels(channels: str) -> str:
    if channels not in CHANNEL_AGGREGATIONS:
        raise ConfigError(
            f"unknown channel aggregation {channels!r}; "
            f"choose one of {', '.join(CHANNEL_AGGREGATIONS)}"
        )
    return channels


def _check_baseline(baseline: float) -> float:
    """A pixel value in [0, 1]: the model rejects anything outside the unit range."""
    if (
        isinstance(baseline, bool)
        or not isinstance(baseline, (int, float))
        or not math.isfinite(baseline)
        or not 0 <= baseline <= 1
    ):
        raise ConfigError(
            "attribution baseline must be a pixel value in [0, 1] (0 = black image), "
            f"got {baseline!r}"
        )
    return float(baseline)


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm statistics frozen) and gradients on for one attribution, then restore.

    captum's notice that DeepLIFT hooks activations is silenced: it would repeat every batch.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Setting forward, backward hooks", category=UserWarning
            )
            yield
    finally:
        model.train(was_training)


def _leaf(images: torch.Tensor) -> torch.Tensor:
    """A copy of ``images`` that requires grad (captum warns for every batch that does not)."""
    return images.detach().clone().requires_grad_(True)


class SaliencyExplainer(Explainer):
    """Saliency (Simonyan et al. 2014): the input gradient of the target logit.

    captum's ``abs`` is off so that ``channels`` alone decides how the sign is treated.
    """

    name = "SM"

    def __init__(self, model: nn.Module, *, channels: str = "abs_max") -> None:
        super().__init__(model)
        self.channels = _check_channels(channels)

    def attribute(
        self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None
    ) -> np.ndarray:
        from captum.attr import Saliency

        targets = resolve_targets(target, len(images))
        with _evaluating(self.model):
            grads = Saliency(TwoClassLogits(self.model)).attribute(
                _leaf(images), target=targets, abs=False
            )
        return aggregate_channels(grads, self.channels)


class IntegratedGradientsExplainer(Explainer):
    """Integrated Gradients (Sundararajan et al. 2017) from a constant-pixel baseline.

    :meth:`explain` also returns captum's convergence delta per image (``extras["delta"]``,
    ``(B,)``, from ``return_convergence_delta=True``): sum of attributions minus
    ``f(x) - f(baseline)``. Its size says whether ``n_steps`` is enough; the report shows it
    so users can choose. :meth:`attribute` skips it (two forwards of the batch fewer).
    """

    name = "IG"

    def __init__(
        self,
        model: nn.Module,
        *,
        channels: str = "abs_max",
        baseline: float = 0.0,
        n_steps: int = 32,
        internal_batch_size: int | None = None,
    ) -> None:
        super().__init__(model)
        self.channels = _check_channels(channels)
        self.baseline = _check_baseline(baseline)
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ConfigError(
                f"Integrated Gradients n_steps must be an integer >= 1, got {n_steps!r}"
            )
        if internal_batch_size is not None and (
            isinstance(internal_batch_size, bool)
            or not isinstance(internal_batch_size, int)
            or internal_batch_size < 1
        ):
            raise ConfigError(
                "Integrated Gradients internal_batch_size must be an integer >= 1 or None, "
                f"got {internal_batch_size!r}"
            )
        self.n_steps = n_steps
        self.internal_batch_size = internal_batch_size

    def attribute(
        self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None
    ) -> np.ndarray:
        return self._run(images, target, with_delta=False)[0]

    def explain(
        self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Maps as :meth:`attribute` and ``{"delta": (B,) float64}``, captum's convergence delta."""
        maps, delta = self._run(images, target, with_delta=True)
        return maps, {"delta": delta}

    def _run(
        self,
        images: torch.Tensor,
        target: int | Sequence[int] | torch.Tensor | None,
        *,
        with_delta: bool,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        from captum.attr import IntegratedGradients

        targets = resolve_targets(target, len(images))
        with _evaluating(self.model):
            result = IntegratedGradients(TwoClassLogits(self.model)).attribute(
                _leaf(images),
                baselines=torch.full_like(images, self.baseline),
                target=targets,
                n_steps=self.n_steps,
                internal_batch_size=self.internal_batch_size,
                return_convergence_delta=with_delta,
            )
        attributions, delta = result if with_delta else (result, None)
        if delta is not None:
            delta = delta.detach().float().cpu().numpy().astype(np.float64)
        return aggregate_channels(attributions, self.channels), delta


class _ReluMaxPool2d(nn.Module):
    """``MaxPool2d`` as a running max of shifted views: ``m + relu(v - m)`` per window offset.

    captum's DeepLIFT rule for max pooling routes the output change back with
    ``max_unpool``, which assigns instead of adding: with overlapping windows (a ResNet
    stem's 3×3 stride 2) contributions are dropped and attributions no longer sum to
    ``f(x) - f(baseline)``. Here the max is linear ops plus one ReLU per offset, where
    DeepLIFT's Rescale rule is exact. The running max starts at the window's centre, which
    is never padding (``2·padding < kernel``), and padded offsets repeat that centre.
    """

    def __init__(
        self, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(kernel[0] * kernel[1] - 1))

    @staticmethod
    def convertible(pool: nn.MaxPool2d) -> bool:
        """Only overlapping windows need it; dilation, ceil mode, wide padding: captum's rule."""
        (kh, kw), (sh, sw), (ph, pw) = (
            _pair(pool.kernel_size),
            _pair(pool.stride or pool.kernel_size),
            _pair(pool.padding),
        )
        return (
            type(pool) is nn.MaxPool2d
            and _pair(pool.dilation) == (1, 1)
            and not pool.ceil_mode
            and not pool.return_indices
            and 2 * ph < kh
            and 2 * pw < kw
            and (kh > sh or kw > sw)
        )

    @classmethod
    def from_pool(cls, pool: nn.MaxPool2d) -> _ReluMaxPool2d:
        return cls(
            _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        height, width = x.shape[-2:]
        out_h, out_w = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
        padded = F.pad(x, (pw, pw, ph, ph))
        inside = F.pad(
            torch.ones(1, 1, height, width, dtype=x.dtype, device=x.device), (pw, pw, ph, ph)
        )

        def offset(t: torch.Tensor, i: int, j: int) -> torch.Tensor:
            return t[..., i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]

        centre = offset(padded, ph, pw)
        running, relus = centre, iter(self.relus)
        for i in range(kh):
            for j in range(kw):
                if (i, j) == (ph, pw):
                    continue
                mask = offset(inside, i, j)
                value = offset(padded, i, j) * mask + centre * (1 - mask)
                running = running + next(relus)(value - running)
        return running


class _PerCall(nn.Module):
    """A module the forward pass calls ``calls`` times, split into that many copies used in turn.

    captum's DeepLIFT stores one call's input and output on the module itself, so a module
    used twice (``self.relu`` applied twice in a block) breaks it; copies used in call
    order give each use its own storage. Relies on every forward calling it ``calls`` times.
    """

    def __init__(self, module: nn.Module, calls: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(module) for _ in range(calls))
        self.calls = 0

    def forward(self, *args: object, **kwargs: object) -> object:
        module = self.copies[self.calls % len(self.copies)]
        self.calls += 1
        return module(*args, **kwargs)


def deeplift_ready_copy(model: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of ``model`` on which captum's DeepLIFT rules hold.

    In-place activations are turned off (timm builds them with ``inplace=True``; the hooks
    must see a module's input before it is overwritten) and overlapping max pools become
    :class:`_ReluMaxPool2d`. Modules reused within one forward are split by
    :func:`_split_reused` at the first attribution, when an input shape is known.
    """
    ready = copy.deepcopy(model).eval().requires_grad_(False)
    for module in ready.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    for module in list(ready.modules()):
        if isinstance(module, nn.MaxPool2d) and _ReluMaxPool2d.convertible(module):
            replace_module(ready, module, _ReluMaxPool2d.from_pool(module))
    unruled = _activations_without_rule(ready)
    if unruled:
        logger.warning(
            "DeepLIFT has no rule for %s: captum passes their gradient through, so attributions "
            "will not sum to f(x) - f(baseline) (compare with Integrated Gradients)",
            ", ".join(unruled),
        )
    return ready


def _activations_without_rule(model: nn.Module) -> list[str]:
    """Activation layers (torch's or timm's) that captum's DeepLIFT has no multiplier rule for."""
    names = {
        type(m).__name__
        for m in model.modules()
        if not deeplift_hooks(m)
        and (
            type(m).__module__ == "torch.nn.modules.activation"
            or type(m).__module__.startswith("timm.layers.activations")
        )
    }
    return sorted(names)


def _split_reused(model: nn.Module, probe: torch.Tensor) -> None:
    """Split every module captum hooks that one forward of ``probe`` calls twice or more."""
    calls: Counter[int] = Counter()
    hooked = {id(m): m for m in model.modules() if deeplift_hooks(m)}
    handles = [
        m.register_forward_pre_hook(lambda mod, _in: calls.update([id(mod)]))
        for m in hooked.values()
    ]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
    for key, count in calls.items():
        if count > 1:
            logger.debug(
                "DeepLIFT: %s is called %d times per forward; using one copy per call",
                hooked[key],
                count,
            )
            replace_module(model, hooked[key], _PerCall(hooked[key], count))


class DeepLiftExplainer(Explainer):
    """DeepLIFT with the Rescale rule (Shrikumar et al. 2017; captum's ``DeepLift``).

    The explainer attributes on a copy of the model made at construction (see
    :func:`deeplift_ready_copy`): it snapshots the weights, so build a new explainer after
    changing them. The copy follows the input's device. Attributions sum to
    ``f(x) - f(baseline)`` for the target (completeness).
    """

    name = "DL"

    def __init__(
        self, model: nn.Module, *, channels: str = "abs_max", baseline: float = 0.0
    ) -> None:
        super().__init__(model)
        self.channels = _check_channels(channels)
        self.baseline = _check_baseline(baseline)
        self._ready = deeplift_ready_copy(model)
        self._split_done = False

    @property
    def ready(self) -> nn.Module:
        """The prepared copy (see :func:`deeplift_ready_copy`) as built, wherever it is."""
        return self._ready

    def ready_model(self, images: torch.Tensor) -> nn.Module:
        """The copy DeepLIFT runs on, on ``images``' device, its reused modules split (once)."""
        self._ready.to(images.device)
        if not self._split_done:
            _split_reused(self._ready, images[:1])
            self._split_done = True
        return self._ready

    def attribute(
        self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None
    ) -> np.ndarray:
        from captum.attr import DeepLift

        targets = resolve_targets(target, len(images))
        ready = self.ready_model(images)
        with _evaluating(ready):
            attributions = DeepLift(TwoClassLogits(ready)).attribute(
                _leaf(images), baselines=torch.full_like(images, self.baseline), target=targets
            )
        return aggregate_channels(attributions, self.channels)
