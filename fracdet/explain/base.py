"""One interface for every attribution method: ``Explainer(model).attribute(images, target)``.

In the spirit of captum: the constructor takes the model, the call takes the settings. Every
method returns ``(B, H, W)`` float32 maps at the input's resolution, so localization metrics
and figures never care which library made a map. :meth:`Explainer.explain` also returns what
a method computes beside its maps (Integrated Gradients' convergence delta), by name; many
methods on one batch go through :func:`fracdet.explain.batch.explain_batch`.

Targets are class indices. A binary fracdet classifier has one fracture logit ``z``; class 1
(fractured) is explained through ``z`` and class 0 through ``-z``, which is what a two-way
softmax over ``(-z/2, z/2)`` would attribute, up to scale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "Explainer",
    "TwoClassLogits",
    "resolve_targets",
    "aggregate_channels",
    "CHANNEL_AGGREGATIONS",
]

#: How a ``(B, C, H, W)`` pixel attribution becomes one map per image. ``abs_max`` is the
#: robust-transfer study's choice (|a| then max over channels); ``sum`` keeps the sign.
CHANNEL_AGGREGATIONS = ("abs_max", "abs_sum", "sum")


class TwoClassLogits(nn.Module):
    """A binary model's ``(B,)`` logit as ``(B, 2)`` logits ``(-z, z)``; other outputs unchanged."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        if logits.ndim == 1:
            return torch.stack([-logits, logits], dim=1)
        return logits


def resolve_targets(target: int | Sequence[int] | torch.Tensor | None, batch: int) -> list[int]:
    """One class index per image; ``None`` means class 1 (fractured) for every image."""
    if target is None:
        return [1] * batch
    if isinstance(target, torch.Tensor):
        target = target.reshape(-1).tolist()
    if isinstance(target, int):
        return [int(target)] * batch
    targets = [int(t) for t in target]
    if len(targets) != batch:
        raise ValueError(f"got {len(targets)} targets for {batch} images")
    return targets


def aggregate_channels(attributions: torch.Tensor, how: str = "abs_max") -> np.ndarray:
    """``(B, C, H, W)`` -> ``(B, H, W)`` float32 maps (see :data:`CHANNEL_AGGREGATIONS`)."""
    if attributions.ndim != 4:
        raise ValueError(
            f"expected (B, C, H, W) attributions, got shape {tuple(attributions.shape)}"
        )
    a = attributions.detach().float()
    if how == "abs_max":
        out = a.abs().amax(dim=1)
    elif how == "abs_sum":
        out = a.abs().sum(dim=1)
    elif how == "sum":
        out = a.sum(dim=1)
    else:
        raise ValueError(f"unknown channel aggregation {how!r} ({', '.join(CHANNEL_AGGREGATIONS)})")
    return out.cpu().numpy().astype(np.float32, copy=False)


class Explainer(ABC):
    """An attribution method bound to a model. Subclasses implement :meth:`attribute`.

    ``name`` is the short code used in tables (``SM``, ``DL``, ``IG``, ``GC``...).
    """

    name: str = ""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @abstractmethod
    def attribute(
        self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None
    ) -> np.ndarray:
        """``(B, H, W)`` float32 maps for ``images`` ``(B, C, H, W)`` in [0, 1]."""

    def explain(
        self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:meth:`attribute`'s maps and the method's per-image by-products by name (none here).

        As captum's ``return_convergence_delta=True`` returns the delta beside the attributions:
        Integrated Gradients gives ``{"delta": (B,)}``.
        """
        return self.attribute(images, target), {}
