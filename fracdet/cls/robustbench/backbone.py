"""A RobustBench model's features under a new linear head, shaped like a timm backbone.

The zoo head is cut off by module surgery: the feature layer (or the head) is replaced by a
module that raises its tensor, so the trunk stops there and the rest never runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fracdet.cls.robustbench.probe import Probe, normalization, probe_head
from fracdet.cls.robustbench.spec import NATIVE_SIZE, parse_spec
from fracdet.cls.robustbench.zoo import load_weights, zoo_entry
from fracdet.errors import ConfigError
from fracdet.nnutil import replace_module

__all__ = ["RobustBenchBackbone", "create_robustbench_backbone"]

logger = logging.getLogger(__name__)

_POOLS = ("avg", "max", "avgmax")


class _Features(Exception):  # noqa: N818 - a signal carrying a tensor, not an error
    """Raised inside the zoo model's forward: hands its features over and skips the rest."""

    def __init__(self, tensor: torch.Tensor) -> None:
        super().__init__("features")
        self.tensor = tensor


class _StopAfter(nn.Module):
    """Runs the feature layer (``inner``, hooks and all) and hands its output over."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise _Features(self.inner(*args, **kwargs))


class _StopBefore(nn.Module):
    """Stands where the zoo head was and hands over its input."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raise _Features(features)


class RobustBenchBackbone(nn.Module):
    """A RobustBench model's features under a new linear head, shaped like a timm model for fracdet.

    ``num_classes``, ``get_classifier()``, ``pretrained_cfg`` and ``feature_info`` (the feature
    map, for Grad-CAM) are what :mod:`fracdet.cls.model` and :mod:`fracdet.explain` ask of a
    backbone; :meth:`stages` lists the trunk's top-level stages for partial fine-tuning.
    """

    def __init__(
        self,
        trunk: nn.Module,
        probe: Probe,
        *,
        spec: str,
        num_classes: int,
        drop_rate: float,
        global_pool: str | None,
        info: dict[str, Any],
    ) -> None:
        super().__init__()
        modules = dict(trunk.named_modules())
        head = modules[probe.head]
        if probe.feature is not None:
            replace_module(trunk, modules[probe.feature], _StopAfter(modules[probe.feature]))
            replace_module(trunk, head, nn.Identity())
        else:
            replace_module(trunk, head, _StopBefore())
        self.trunk = trunk
        self.pool = (global_pool or "avg") if probe.feature is not None else None
        self.drop = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        self.head = nn.Linear(probe.channels, num_classes)
        self.num_classes = num_classes
        self.backbone_info = info
        self.pretrained_cfg = {
            "architecture": spec,
            "classifier": "head",
            "mean": (0.0, 0.0, 0.0),
            "std": (1.0, 1.0, 1.0),
        }
        self.default_cfg = self.pretrained_cfg
        self.feature_info = (
            [
                {
                    "module": f"trunk.{probe.feature}.inner",
                    "num_chs": probe.channels,
                    "reduction": probe.reduction,
                }
            ]
            if probe.feature is not None
            else []
        )

    def get_classifier(self) -> nn.Module:
        return self.head

    def stages(self) -> list[nn.Module]:
        """The trunk's top-level children that hold parameters, in registration order."""
        return [
            module
            for _, module in self.trunk.named_children()
            if any(True for _ in module.parameters())
        ]

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` features: the trunk run up to its feature map, globally pooled (or the old
        head's input).
        """
        try:
            self.trunk(pixels)
        except _Features as caught:
            features = caught.tensor
        else:  # the probe checked that the capture point runs on every forward
            raise RuntimeError("the RobustBench trunk finished without reaching its feature layer")
        if features.ndim == 4:
            if self.pool == "max":
                return features.amax(dim=(2, 3))
            if self.pool == "avgmax":
                return 0.5 * (features.mean(dim=(2, 3)) + features.amax(dim=(2, 3)))
            return features.mean(dim=(2, 3))
        return features

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.forward_features(pixels)))


def create_robustbench_backbone(
    backbone: str,
    *,
    num_outputs: int,
    pretrained: bool = False,
    weights: Path | None = None,
    drop_rate: float = 0.0,
    global_pool: str | None = None,
) -> RobustBenchBackbone:
    """The RobustBench model ``backbone`` (``robustbench:DATASET/THREAT/NAME``) with a
    ``num_outputs`` head.

    See the module docstring for where weights come from. ``global_pool`` (``avg``, the
    zoo's own, ``max`` or ``avgmax``) pools the feature map for the new head.
    """
    spec = parse_spec(backbone)
    if global_pool is not None and global_pool not in _POOLS:
        raise ConfigError(
            f"global_pool {global_pool!r} is not available for RobustBench backbones; choose "
            f"one of {', '.join(_POOLS)}"
        )
    entry = zoo_entry(spec)
    model, source = load_weights(spec, entry, pretrained=pretrained, weights=weights)
    probe = probe_head(spec, model)
    if probe.feature is None and global_pool is not None:
        raise ConfigError(
            f"{spec} pools its features itself (its head reads a vector): drop global_pool"
        )
    info = {
        "source": "robustbench",
        "model": spec.name,
        "dataset": spec.dataset,
        "threat": spec.threat,
        "weights": source,
        "normalization": normalization(model),
        "features": f"global {global_pool or 'avg'} pool of {probe.feature}"
        if probe.feature
        else f"input of the zoo head {probe.head}",
        "native_size": NATIVE_SIZE[spec.dataset],
    }
    logger.info(
        "%s: weights from %s; normalisation %s", spec, source, info["normalization"]["where"]
    )
    return RobustBenchBackbone(
        model,
        probe,
        spec=str(spec),
        num_classes=num_outputs,
        drop_rate=drop_rate,
        global_pool=global_pool,
        info=info,
    )
