"""Attributions of a pixel-space classifier as ``(B, H, W)`` maps, whatever library computes them.

One method: an :class:`Explainer` from :func:`create_explainer`. Many on one batch, with the
model's decision and shared passes: :func:`explain_batch`.
"""

from fracdet.explain.base import (
    CHANNEL_AGGREGATIONS,
    Explainer,
    TwoClassLogits,
    aggregate_channels,
    resolve_targets,
)
from fracdet.explain.batch import ExplainedBatch, explain_batch
from fracdet.explain.captum_methods import (
    DeepLiftExplainer,
    IntegratedGradientsExplainer,
    SaliencyExplainer,
    deeplift_ready_copy,
)
from fracdet.explain.gradcam import GradCAMExplainer, gradcam_target
from fracdet.explain.registry import METHODS, create_explainer

__all__ = [
    "Explainer",
    "ExplainedBatch",
    "explain_batch",
    "GradCAMExplainer",
    "SaliencyExplainer",
    "DeepLiftExplainer",
    "IntegratedGradientsExplainer",
    "TwoClassLogits",
    "aggregate_channels",
    "resolve_targets",
    "gradcam_target",
    "deeplift_ready_copy",
    "create_explainer",
    "METHODS",
    "CHANNEL_AGGREGATIONS",
]
