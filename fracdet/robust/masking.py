"""A deliberately gradient-masked classifier: the proof that fracdet's attack checks catch one.

:class:`QuantizedInput` rounds the input to a few grey levels before the model sees it. The
rounding's derivative is zero almost everywhere, so every input gradient is exactly zero:
"shattered gradients" (Athalye et al. 2018, §4.1, the input quantisation and thermometer
defences they broke). PGD, FGSM, APGD and FAB all follow the gradient and stall, and a PGD
audit would report the model robust; the forward pass is an ordinary classifier that a
black-box attack (Square), or a larger ε, still fools. Wrap a saved classifier with
``QuantizedInput(load_classifier(path)[0])``, or save a copy whose wrapper rounds its inputs
with :func:`fracdet.cls.checkpoint.save_input_quantized` (what the demo audits as "masked").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["QuantizedInput", "quantize_pixels", "check_levels", "straight_through"]

_STRAIGHT_THROUGH = False


@contextmanager
def straight_through() -> Iterator[None]:
    """Inside, :func:`quantize_pixels` passes gradients through as if it were the identity.

    BPDA (Athalye et al., ICML 2018, §4.1): the forward pass still rounds, the backward pass
    takes the rounding's derivative as 1, which is how that paper broke input quantisation.
    The attack checks run a PGD this way on every model; on a model without fracdet's input
    quantisation it is plain PGD.
    """
    global _STRAIGHT_THROUGH
    before, _STRAIGHT_THROUGH = _STRAIGHT_THROUGH, True
    try:
        yield
    finally:
        _STRAIGHT_THROUGH = before


def check_levels(levels: object) -> int:
    """``levels`` as the integer >= 2 it must be (else one clear error)."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    return levels


def quantize_pixels(images: torch.Tensor, levels: int) -> torch.Tensor:
    """``round(x · (levels − 1)) / (levels − 1)``: pixels in [0, 1] on ``levels`` grey levels.

    Its derivative is zero almost everywhere: a model that rounds its input this way has
    shattered gradients (a fracdet classifier with ``input_levels`` does, inside its wrapper).
    """
    step = levels - 1
    rounded = torch.round(images * step) / step
    if _STRAIGHT_THROUGH:  # BPDA: round forward, identity backward
        return images + (rounded - images).detach()
    return rounded


class QuantizedInput(nn.Module):
    """``model(round(x · (levels − 1)) / (levels − 1))``: ``levels`` grey levels, zero gradient."""

    def __init__(self, model: nn.Module, levels: int = 16) -> None:
        super().__init__()
        self.model, self.levels = model, check_levels(levels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(quantize_pixels(images, self.levels))
