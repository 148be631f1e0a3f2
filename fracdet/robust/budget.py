"""The check every attack's output passes: inside its budget and inside [0, 1].

An attack that leaves its ε-ball measures a robustness the model was never asked for, and one
that leaves [0, 1] feeds the model pixels no radiograph has; both would go unnoticed in a
number. :func:`check_budget` runs on every attack's output (PGD, FGSM, ℓ2 PGD, each attack of
the ensemble).
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_budget"]

# float32 rounding of x ± ε: how far past its budget a projected pixel may read
_BUDGET_SLACK = 1e-6


def check_budget(
    adv: torch.Tensor, images: torch.Tensor, eps: float, *, attack: str, norm: str = "linf"
) -> None:
    """Raise unless every adversarial image is finite, in [0, 1] and within ``eps`` of its clean
    image (ℓ∞, or ℓ2 per image), up to float32 rounding: an attack outside its budget would
    report a robustness the model does not lack. A plain ``if``, not ``assert``: it stays on
    under ``python -O``."""
    delta = (adv.detach().float() - images.detach().float()).flatten(1)
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(p=2, dim=1)
    slack = _BUDGET_SLACK * (1 if norm == "linf" else math.sqrt(delta.shape[1]))
    if not bool(torch.isfinite(adv).all()):
        raise RuntimeError(f"attack {attack} returned non-finite pixels")
    if float(adv.min()) < 0 or float(adv.max()) > 1:
        raise RuntimeError(
            f"attack {attack} left [0, 1]: pixels in [{float(adv.min()):.6f}, "
            f"{float(adv.max()):.6f}]"
        )
    if len(size) and float(size.max()) > eps + slack:
        raise RuntimeError(
            f"attack {attack} left its {norm} budget: {float(size.max()):.6f} > eps {eps:.6f}"
        )
