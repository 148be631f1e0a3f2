"""MAE checkpoints as data: ``NAME.safetensors`` (the whole ``ViTMAEForPreTraining``) beside
``NAME.json``.

The JSON holds the Hugging Face config, so a checkpoint rebuilds without the hub and without
unpickling anything (ARCHITECTURE invariant 3), plus where the weights started from, the
epoch, validation numbers, the training config and versions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fracdet.cls.checkpoint import (
    checkpoint_files,
    meta_from_json,
    meta_to_json,
    read_weights,
    unwrap_model,
    write_checkpoint,
)
from fracdet.errors import ConfigError
from fracdet.mae.model import PixelMAE, load_mae_state, mae_config, new_mae

__all__ = ["FORMAT", "MAEMeta", "save_mae", "load_mae", "resolve_mae_checkpoint", "read_mae_state"]

logger = logging.getLogger(__name__)

FORMAT = "fracdet-mae/1"


@dataclass(frozen=True)
class MAEMeta:
    """Everything needed to rebuild an MAE and say where it came from, saved as JSON."""

    hf_config: dict[str, Any]
    image_size: int
    patch_size: int
    mask_ratio: float
    init: str  # random, a hub id, or the local weights it started from
    mean: tuple[float, ...]
    std: tuple[float, ...]
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    data_hash: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, model: PixelMAE, init: str, **values: Any) -> MAEMeta:
        """The metadata of ``model`` as it is now."""
        model = unwrap_model(model)
        return cls(
            hf_config=model.config.to_dict(),
            image_size=model.image_size,
            patch_size=model.patch_size,
            mask_ratio=model.mask_ratio,
            init=init,
            mean=tuple(model.mean.flatten().tolist()),
            std=tuple(model.std.flatten().tolist()),
            **values,
        )

    def to_json(self) -> str:
        return meta_to_json(self, FORMAT)

    @classmethod
    def from_json(cls, text: str, path: Path) -> MAEMeta:
        # another model's checkpoint (a classifier run, the exported encoder) is named as such
        return meta_from_json(
            cls,
            text,
            path,
            format=FORMAT,
            kind="MAE",
            tuples=("mean", "std"),
            mappings=("hf_config",),
            hint=": give a pretrain-mae run folder or its .safetensors",
        )


def resolve_mae_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """``(weights, metadata)`` from a run folder (its ``best``), a ``.safetensors`` or a
    ``.json``.
    """
    return checkpoint_files(path, kind="MAE", article="an")


def read_mae_state(path: str | Path) -> tuple[MAEMeta, dict[str, torch.Tensor], Path]:
    """The metadata, the raw state dict and the weights path of a checkpoint (no model built)."""
    weights, meta_path = resolve_mae_checkpoint(path)
    meta = MAEMeta.from_json(meta_path.read_text(encoding="utf-8"), meta_path)
    return meta, read_weights(weights), weights


def save_mae(model: torch.nn.Module, meta: MAEMeta, path: Path) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` atomically, weights first."""
    return write_checkpoint(model, meta.to_json(), path, file_metadata={"format": FORMAT})


def load_mae(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[PixelMAE, MAEMeta]:
    """Rebuild the model from the JSON and load the safetensors weights strictly, in eval mode."""
    meta, state, weights = read_mae_state(path)
    try:
        config = mae_config(
            meta.hf_config,
            image_size=meta.image_size,
            patch_size=meta.patch_size,
            mask_ratio=meta.mask_ratio,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"checkpoint metadata holds an unusable ViTMAE config ({exc})",
            weights.with_suffix(".json"),
        ) from exc
    model = new_mae(config)
    load_mae_state(model, state, weights)
    model.mean.copy_(torch.tensor(meta.mean).view(1, -1, 1, 1))
    model.std.copy_(torch.tensor(meta.std).view(1, -1, 1, 1))
    return model.to(device).eval(), meta
