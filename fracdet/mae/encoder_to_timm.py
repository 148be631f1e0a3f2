"""The adapted MAE encoder as a timm ``VisionTransformer`` state dict: the explicit key mapping.

Hugging Face ``ViTMAEForPreTraining`` key (transformers 5 naming; the 4.x name in brackets,
read too) -> timm ``VisionTransformer`` key (``i``: block):

* ``vit.embeddings.cls_token`` -> ``cls_token``
* ``vit.embeddings.position_embeddings`` (1, 1+N, D), class row zero -> ``pos_embed``
* ``vit.embeddings.patch_embeddings.projection.{weight,bias}`` -> ``patch_embed.proj.*``
* ``vit.layers.i.layernorm_before.*`` [``vit.encoder.layer.i.``...] -> ``blocks.i.norm1.*``
* ``vit.layers.i.attention.{q,k,v}_proj.*`` [``attention.attention.{query,key,value}``]
  -> ``blocks.i.attn.qkv.*`` (q, k, v stacked on dim 0)
* ``vit.layers.i.attention.o_proj.*`` [``attention.output.dense``] -> ``blocks.i.attn.proj.*``
* ``vit.layers.i.layernorm_after.*`` -> ``blocks.i.norm2.*``
* ``vit.layers.i.mlp.fc1.*`` [``intermediate.dense``] -> ``blocks.i.mlp.fc1.*``
* ``vit.layers.i.mlp.fc2.*`` [``output.dense``] -> ``blocks.i.mlp.fc2.*``
* ``vit.layernorm.*`` -> ``norm.*``
* ``decoder.*`` -> dropped (pretraining only)

Why the two compute the same function: Hugging Face adds the position embeddings to the
patches, then prepends ``cls_token + pos[0]``; timm prepends ``cls_token`` and adds all of
``pos_embed``: equal. Both are pre-norm blocks with exact GELU and ``head_dim ** -0.5``
attention scaling. The LayerNorm ``eps`` matches because :mod:`fracdet.mae.model` builds the
MAE with timm's 1e-6. Hugging Face shuffles patches even with nothing masked, so the
comparison (and :meth:`PixelMAE.encode`) passes increasing noise to keep raster order.

The file carries the timm architecture (``timm_args`` in its safetensors metadata:
patch size, width, depth, heads, MLP ratio), which ``fracdet.cls.model.create_classifier``
applies to any ``vit_*`` backbone name, so ``--backbone vit_base_patch16_224.mae`` loads an
encoder of any size; the classifier's input size may differ (timm resamples ``pos_embed``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fracdet.cls.model import ARCH_METADATA_KEY
from fracdet.errors import ConfigError
from fracdet.fsutil import atomic_write, atomic_write_json
from fracdet.mae.model import canonical_key

__all__ = [
    "ENCODER_FORMAT",
    "timm_args",
    "suggested_backbone",
    "encoder_state_dict",
    "export_encoder",
]

logger = logging.getLogger(__name__)

ENCODER_FORMAT = "fracdet-mae-encoder/1"
_LAYER = {
    "layernorm_before": "norm1",
    "attention.o_proj": "attn.proj",
    "layernorm_after": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_TIMM_NAMES = {
    (768, 12, 16): "vit_base_patch16_224.mae",
    (1024, 24, 16): "vit_large_patch16_224.mae",
    (1280, 32, 14): "vit_huge_patch14_224.mae",
}


def timm_args(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``timm.create_model`` keyword arguments of a ViTMAEConfig's encoder."""
    hidden, intermediate = int(config["hidden_size"]), int(config["intermediate_size"])
    if config.get("hidden_act", "gelu") != "gelu":
        raise ConfigError(
            f"the encoder uses {config['hidden_act']!r} activations; timm's ViT uses exact GELU"
        )
    # timm's MLP width is int(embed_dim * mlp_ratio)
    if int(hidden * (intermediate / hidden)) != intermediate:
        raise ConfigError(
            f"intermediate_size {intermediate} is not a width timm can express as hidden_size "
            "x mlp_ratio"
        )
    return {
        "patch_size": int(config["patch_size"]),
        "embed_dim": hidden,
        "depth": int(config["num_hidden_layers"]),
        "num_heads": int(config["num_attention_heads"]),
        "mlp_ratio": intermediate / hidden,
        "qkv_bias": bool(config.get("qkv_bias", True)),
    }


def suggested_backbone(config: Mapping[str, Any]) -> str:
    """The timm name to pass to ``train-cls --backbone`` (any ``vit_*`` works: the file sets the
    size).
    """
    key = (int(config["hidden_size"]), int(config["num_hidden_layers"]), int(config["patch_size"]))
    return _TIMM_NAMES.get(key, "vit_base_patch16_224.mae")


def encoder_state_dict(
    state: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """Map an MAE state dict (``vit.`` prefix optional) to timm keys; every encoder key must be
    used.

    A key left over means the MAE holds something timm's ViT would not compute: an error,
    never a silent drop.
    """
    src = {
        canonical_key(k).removeprefix("vit."): v
        for k, v in state.items()
        if not k.startswith("decoder.")
    }
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in src:
            raise ConfigError(f"MAE state dict lacks {key!r}: not a ViTMAE encoder")
        used.add(key)
        return src[key].detach().clone().contiguous()

    out = {
        "cls_token": take("embeddings.cls_token"),
        "pos_embed": take("embeddings.position_embeddings"),
        "patch_embed.proj.weight": take("embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": take("embeddings.patch_embeddings.projection.bias"),
        "norm.weight": take("layernorm.weight"),
        "norm.bias": take("layernorm.bias"),
    }
    for i in range(int(config["num_hidden_layers"])):
        hf, tm = f"layers.{i}.", f"blocks.{i}."
        for param in ("weight", "bias"):
            qkv = [f"{hf}attention.{name}_proj.{param}" for name in "qkv"]
            if all(k in src for k in qkv):
                out[f"{tm}attn.qkv.{param}"] = torch.cat([take(k) for k in qkv], dim=0)
            for hf_name, timm_name in _LAYER.items():
                out[f"{tm}{timm_name}.{param}"] = take(f"{hf}{hf_name}.{param}")
    left = sorted(set(src) - used)
    if left:
        raise ConfigError(
            f"MAE encoder key {left[0]!r} has no timm counterpart ({len(left)} left over)"
        )
    return out


def export_encoder(
    state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    path: Path,
    *,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``path`` (timm keys, architecture in the metadata) and a ``.json`` describing it."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    args = timm_args(config)
    tensors = encoder_state_dict(state, config)
    metadata = {"format": ENCODER_FORMAT, ARCH_METADATA_KEY: json.dumps(args)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    backbone = suggested_backbone(config)
    atomic_write_json(
        path.with_suffix(".json"),
        {
            "format": ENCODER_FORMAT,
            "backbone": backbone,
            "timm_args": args,
            "pretrained_image_size": int(config["image_size"]),
            "usage": f"fracdet train-cls MANIFEST --backbone {backbone} --weights {path}",
            **(info or {}),
        },
    )
    logger.info("encoder for timm written to %s (--backbone %s --weights %s)", path, backbone, path)
    return path
