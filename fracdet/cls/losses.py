"""Training criteria for the classifier: class-weighted cross-entropy or focal loss."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["make_criterion", "class_weights"]

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (a class absent from training weighs 1)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def make_criterion(
    kind: str, *, num_outputs: int, weights: torch.Tensor | None = None, gamma: float = 2.0
) -> Criterion:
    """A mean-reduced loss over logits ``(B,)`` (binary) or ``(B, C)``.

    ``weights`` are per-class weights (index 0 negative, 1 positive for the binary task).
    Focal loss (Lin et al. 2017) uses torchvision's sigmoid version for the binary task.
    """
    if kind not in ("ce", "focal"):
        raise ValueError(f"unknown loss {kind!r} (ce, focal)")
    if num_outputs == 1:
        pos_weight = None if weights is None else weights[1] / weights[0]
        if kind == "ce":
            return lambda logits, y: F.binary_cross_entropy_with_logits(
                logits.float(),
                y.float(),
                pos_weight=None if pos_weight is None else pos_weight.to(logits.device),
            )
        from torchvision.ops import sigmoid_focal_loss

        alpha = -1.0 if weights is None else float(weights[1] / weights.sum())
        return lambda logits, y: sigmoid_focal_loss(
            logits.float(), y.float(), alpha=alpha, gamma=gamma, reduction="mean"
        )

    def multiclass(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = None if weights is None else weights.to(logits.device)
        ce = F.cross_entropy(logits.float(), y, weight=w, reduction="none")
        if kind == "ce":
            return ce.sum() / (w[y].sum() if w is not None else len(y))
        p_true = torch.exp(-F.cross_entropy(logits.float(), y, reduction="none"))
        return ((1 - p_true) ** gamma * ce).mean()

    return multiclass
