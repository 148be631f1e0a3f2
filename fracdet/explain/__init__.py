"""Attributions of a pixel-space classifier as ``(B, H, W)`` maps, whatever library computes them."""

from fracdet.explain.base import (
    CHANNEL_AGGREGATIONS,
    Explainer,
    TwoClassLogits,
    aggregate_channels,
    resolve_targets,
)
from fracdet.explain.gradcam import GradCAMExplainer, gradcam_target

__all__ = [
    "Explainer",
    "GradCAMExplainer",
    "TwoClassLogits",
    "aggregate_channels",
    "resolve_targets",
    "gradcam_target",
    "CHANNEL_AGGREGATIONS",
]
