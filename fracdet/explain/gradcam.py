"""Grad-CAM and Grad-CAM++ (pytorch-grad-cam) behind the ``Explainer`` interface.

The hooked layer is the last feature stage of the timm backbone (its ``feature_info``);
CNN, channels-last (Swin-like) and ViT token outputs are all reshaped to ``(B, C, h, w)``.
Maps come back at input resolution, each scaled to [0, 1] by pytorch-grad-cam.

:func:`cam_maps` is the same computation, by pytorch-grad-cam's own functions, from
activations and gradients already in hand: :mod:`fracdet.explain.batch` catches them (with
pytorch-grad-cam's ``ActivationsAndGradients``) in the pass that also serves Saliency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fracdet.errors import ConfigError
from fracdet.explain.base import Explainer, resolve_targets

__all__ = ["GradCAMExplainer", "gradcam_target", "ClassScore", "cam_maps"]


@dataclass(frozen=True)
class ClassScore:
    """Grad-CAM target: the logit of class ``index``; a binary model's class 0 is ``-z``."""

    index: int

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.ndim == 0 or output.numel() == 1:
            z = output.reshape(())
            return z if self.index == 1 else -z
        return output[self.index]


def _channels_last_to_first(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class _TokenGrid:
    """ViT tokens ``(B, prefix + gh*gw, C)`` -> a ``(B, C, gh, gw)`` map."""

    prefix: int
    gh: int
    gw: int

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens[:, self.prefix :, :]
        return grid.reshape(grid.shape[0], self.gh, self.gw, grid.shape[2]).permute(0, 3, 1, 2)


def gradcam_target(
    model: torch.nn.Module, image_size: int, backbone_name: str = ""
) -> tuple[torch.nn.Module, Callable | None]:
    """The layer Grad-CAM hooks (the last feature stage of the timm backbone) and its reshape.

    CNNs give ``(B, C, H, W)`` maps and need no reshape; channels-last stages (Swin-like)
    are permuted; ViTs give tokens, reshaped to their patch grid after dropping the prefix
    (class/register) tokens. Anything else is a :class:`ConfigError`.
    """
    backbone = getattr(model, "backbone", model)
    name = backbone_name or type(backbone).__name__
    info = getattr(backbone, "feature_info", None)
    try:
        module_name = info[-1]["module"] if info else None
        num_chs = int(info[-1]["num_chs"]) if info else None
    except (KeyError, IndexError, TypeError):
        module_name, num_chs = None, None
    if not module_name:
        raise ConfigError(
            "Grad-CAM needs a target layer: a timm backbone's last feature stage "
            "(feature_info) or, for an imported classifier, the layer import-cls found or was "
            f"given (--cam-layer); {name!r} has none"
        )
    try:
        layer = backbone.get_submodule(module_name)
    except AttributeError as exc:
        raise ConfigError(
            f"Grad-CAM: backbone {name!r} names stage {module_name!r} in feature_info "
            "but has no such module"
        ) from exc
    shapes: list[tuple[int, ...]] = []
    handle = layer.register_forward_hook(
        lambda _m, _i, out: (
            shapes.append(tuple(out.shape)) if isinstance(out, torch.Tensor) else None
        )
    )
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, 1, image_size, image_size, device=device))
    finally:
        handle.remove()
    shape = shapes[-1] if shapes else ()
    if len(shape) == 4 and shape[1] == num_chs:
        return layer, None
    if len(shape) == 4 and shape[-1] == num_chs:
        return layer, _channels_last_to_first
    grid = getattr(getattr(backbone, "patch_embed", None), "grid_size", None)
    if len(shape) == 3 and grid is not None:
        prefix = int(getattr(backbone, "num_prefix_tokens", 1))
        gh, gw = int(grid[0]), int(grid[1])
        if shape[1] - prefix == gh * gw:
            return layer, _TokenGrid(prefix, gh, gw)
    raise ConfigError(
        f"Grad-CAM supports CNN and ViT backbones; {name!r} gives a {len(shape)}-D output "
        f"{shape} at {module_name!r} that is not a feature map"
    )


def cam_maps(
    activations: torch.Tensor, gradients: torch.Tensor, *, plus: bool, size: tuple[int, int]
) -> np.ndarray:
    """``(B, H, W)`` Grad-CAM (or ++) maps at ``size`` from a layer's ``(B, C, h, w)`` tensors.

    What pytorch-grad-cam's ``BaseCAM.forward`` does after its backward, for one layer: the
    channel weights by the method's own ``get_cam_weights``, their sum over the activations
    (the line of ``get_cam_image``), ReLU and ``scale_cam_image`` to ``size``
    (``compute_cam_per_layer``), then its ``aggregate_multi_layers``. Neither method reads
    the CAM object's state, so both are called on the class: an instance would hook the model.
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.base_cam import BaseCAM
    from pytorch_grad_cam.utils.image import scale_cam_image

    acts = activations.detach().float().cpu().numpy()
    grads = gradients.detach().float().cpu().numpy()
    if acts.ndim != 4 or acts.shape != grads.shape:
        raise ValueError(
            "expected (B, C, h, w) activations and gradients of one shape, "
            f"got {acts.shape} and {grads.shape}"
        )
    method = GradCAMPlusPlus if plus else GradCAM
    weights = method.get_cam_weights(None, None, None, None, acts, grads)
    cam = np.maximum((weights[:, :, None, None] * acts).sum(axis=1), 0)
    height, width = size
    per_layer = scale_cam_image(cam, (width, height))[:, None]
    return BaseCAM.aggregate_multi_layers(None, [per_layer]).astype(np.float32, copy=False)


class GradCAMExplainer(Explainer):
    """Grad-CAM (``plus=False``) or Grad-CAM++ over the backbone's last feature stage.

    ``image_size`` is the classifier's input size, used once to find and check the layer.
    Hooks live only for one :meth:`attribute` call: held longer they would hoard activations.
    The CAM runs in float32 even under a bf16 autocast: pytorch-grad-cam hands the layer's
    tensors to numpy, which has no bfloat16.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        image_size: int,
        backbone_name: str = "",
        plus: bool = False,
    ) -> None:
        super().__init__(model)
        self.plus = plus
        self.name = "GC++" if plus else "GC"
        self.layer, self.reshape = gradcam_target(model, image_size, backbone_name)

    def attribute(
        self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None
    ) -> np.ndarray:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

        method = GradCAMPlusPlus if self.plus else GradCAM
        targets = [ClassScore(t) for t in resolve_targets(target, len(images))]
        # a graph even when the model's weights are frozen (as in the audit): the hooked
        # activations then get gradients through the input
        images = images.detach().requires_grad_(True)
        with (
            torch.enable_grad(),
            torch.autocast(images.device.type, enabled=False),
            method(
                model=self.model, target_layers=[self.layer], reshape_transform=self.reshape
            ) as cam,
        ):
            maps = cam(input_tensor=images, targets=targets)
        self.model.zero_grad(set_to_none=True)
        return np.asarray(maps, dtype=np.float32)
