"""Where an MAE starts: Meta's weights from the hub, a local copy, an earlier fracdet run, or
random.

Offline-first like the rest of fracdet: ``pretrained`` checks that the hub answers before
trying (seconds, not a minute of retries) and says what to do instead; local weights are a
Hugging Face model folder (``config.json`` + weights, e.g. from ``huggingface-cli download
facebook/vit-mae-base --local-dir DIR``) or a fracdet MAE checkpoint, loaded without
unpickling code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fracdet.cls.state_files import hub_reachable
from fracdet.errors import ConfigError
from fracdet.mae.checkpoint import read_mae_state
from fracdet.mae.model import (
    ARCHS,
    HUB_IDS,
    PixelMAE,
    load_mae_state,
    mae_config,
    new_mae,
    transformers_module,
)

__all__ = ["build_mae"]

logger = logging.getLogger(__name__)


def build_mae(
    *,
    arch: str = "base",
    image_size: int = 224,
    patch_size: int | None = None,
    mask_ratio: float = 0.75,
    pretrained: bool = False,
    weights: Path | None = None,
    model_args: Mapping[str, Any] | None = None,
) -> tuple[PixelMAE, str]:
    """The starting model and a word on where its weights came from (``random``, a hub id, a path).

    ``arch`` (base, large, huge) sizes a random model and picks the hub id for
    ``pretrained``; loaded weights bring their own architecture, and ``patch_size`` must then
    match theirs (the patch projection's shape depends on it). Random initialisation draws
    from torch's global generator: seed before calling.
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown MAE size {arch!r} ({', '.join(ARCHS)})")
    if weights is not None:
        base, state, init = _read_local(Path(weights))
    elif pretrained:
        base, state, init = _read_hub(HUB_IDS[arch])
    else:
        base, state, init = dict(ARCHS[arch]), None, "random"
    if state is not None and patch_size is not None and patch_size != int(base["patch_size"]):
        raise ConfigError(
            f"{init} uses {base['patch_size']}-px patches: --patch-size {patch_size} cannot "
            "load its weights"
        )
    config = mae_config(
        base,
        image_size=image_size,
        patch_size=patch_size or int(base["patch_size"]),
        mask_ratio=mask_ratio,
        model_args=model_args,
    )
    model = new_mae(config)
    if state is not None:
        load_mae_state(model, state, init)
    logger.info(
        "MAE: %d-layer encoder, width %d, %d-px patches at %d px, %.0f%% masked; weights: %s",
        config.num_hidden_layers,
        config.hidden_size,
        config.patch_size,
        image_size,
        100 * mask_ratio,
        init,
    )
    return model, init


def _read_local(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """A Hugging Face ViT-MAE folder or a fracdet MAE checkpoint (run folder, .safetensors,
    .json).
    """
    if not path.exists():
        raise ConfigError("MAE weights not found", path)
    if path.is_dir() and (path / "config.json").is_file():
        return _read_pretrained(str(path), local=True)
    fracdet_files = (path.is_dir() and (path / "best.json").is_file()) or (
        path.suffix in (".safetensors", ".json") and path.with_suffix(".json").is_file()
    )
    if not fracdet_files:
        raise ConfigError(
            "not MAE weights: give a Hugging Face model folder (config.json + weights, e.g. from "
            "`huggingface-cli download facebook/vit-mae-base --local-dir DIR`) or a fracdet "
            "MAE checkpoint",
            path,
        )
    meta, state, weights = read_mae_state(path)
    return {**meta.hf_config, "patch_size": meta.patch_size}, state, str(weights)


def _read_hub(hub_id: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    if not hub_reachable():
        raise ConfigError(
            f"cannot download pretrained weights for {hub_id!r}: the hub is unreachable "
            "(offline?). "
            "Pass a local model folder or fracdet MAE checkpoint with --weights PATH instead "
            "(or train from scratch without --pretrained)"
        )
    return _read_pretrained(hub_id, local=False)


def _read_pretrained(
    source: str, *, local: bool
) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """Config and state dict through ``from_pretrained`` (safetensors or weights-only torch
    files).
    """
    transformers = transformers_module()
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=local)
        if config.model_type != "vit_mae":
            raise ConfigError(
                f"a {config.model_type!r} model, not a ViT-MAE (model_type vit_mae)", source
            )
        model = transformers.ViTMAEForPreTraining.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"cannot load ViT-MAE weights ({first})", source) from exc
    return model.config.to_dict(), model.state_dict(), source
