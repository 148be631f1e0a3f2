"""What a zoo model is made of: where its head and feature map are, what it normalises.

The zoo models pool with fixed windows sized for their native input (``avg_pool2d(out, 8)``
at 32 px), which breaks at 224 px; a probe at the native size finds the last feature map and
checks that a global average of it is exactly what the original head reads, so a new head
sees the same features at the native size and well-defined ones at any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fracdet.cls.robustbench.spec import NATIVE_SIZE, RobustBenchSpec
from fracdet.errors import ConfigError

__all__ = ["Probe", "probe_head", "normalization"]

logger = logging.getLogger(__name__)

#: Layers that only pool or pass through: the feature map is the last output before them.
_PASS_THROUGH = (
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.MaxPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Identity,
    nn.Flatten,
    nn.Dropout,
)


def normalization(model: nn.Module) -> dict[str, Any]:
    """The mean/std a zoo model applies to its [0, 1] input itself, if any (buffers or plain
    tensors).
    """
    for name, module in model.named_modules():
        for mean_attr, std_attr in (("mean", "std"), ("mu", "sigma")):
            mean, std = getattr(module, mean_attr, None), getattr(module, std_attr, None)
            if (
                isinstance(mean, torch.Tensor)
                and isinstance(std, torch.Tensor)
                and mean.numel() in (1, 3)
                and std.numel() in (1, 3)
            ):
                where = f"{name}.{mean_attr}/{std_attr}" if name else f"{mean_attr}/{std_attr}"
                return {
                    "where": f"inside the model ({where})",
                    "mean": [round(float(v), 6) for v in mean.flatten()],
                    "std": [round(float(v), 6) for v in std.flatten()],
                }
    return {"where": "none: the model reads [0, 1] pixels as they are"}


@dataclass
class Probe:
    head: str  # the zoo head's module name
    head_in: int
    feature: str | None  # the last feature map's module (None: read the head's input)
    channels: int
    reduction: int


def _is_inside(name: str, ancestor: str) -> bool:
    return ancestor == "" or name.startswith(ancestor + ".")


def probe_head(spec: RobustBenchSpec, model: nn.Module) -> Probe:
    """Find the zoo head (the last linear layer, producing the output) and the feature map before
    it.

    Two eval-mode passes at the native size: the first records which modules finish in which
    order, the second catches the candidate tensors. Global average pooling of the feature map
    must equal the head's input (the zoo's fixed pooling at its native size), and only
    parameter-free layers may run between them; otherwise the head's input itself is used,
    which ties the model to the input size it was built for.
    """
    size = NATIVE_SIZE[spec.dataset]
    order: list[tuple[str, tuple[int, ...] | None]] = []
    modules = dict(model.named_modules())
    handles = [
        m.register_forward_hook(
            lambda m, i, o, name=name: order.append(
                (name, tuple(o.shape) if isinstance(o, torch.Tensor) else None)
            )
        )
        for name, m in modules.items()
        if name
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros(1, 3, size, size))
    except Exception as exc:  # noqa: BLE001 - any architecture may fail on its own terms
        raise ConfigError(
            f"{spec} does not run on a {size}x{size} image ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        raise ConfigError(
            f"{spec} does not return (batch, classes) logits: fracdet cannot put a new head on it"
        )
    linear = [k for k, (name, _) in enumerate(order) if isinstance(modules[name], nn.Linear)]
    if not linear:
        raise ConfigError(
            f"{spec} has no linear classifier layer: fracdet cannot put a new head on it"
        )
    head_at = linear[-1]
    head = order[head_at][0]
    calls = [name for name, _ in order]
    if calls.count(head) != 1:
        raise ConfigError(
            f"{spec}: its last linear layer {head!r} runs more than once per image: fracdet "
            "cannot put a new head on it"
        )
    feature = None
    for k in range(head_at - 1, -1, -1):
        name, shape = order[k]
        if (
            shape is not None
            and len(shape) == 4
            and not isinstance(modules[name], _PASS_THROUGH)
            and not _is_inside(head, name)
        ):
            feature = name
            break
    if feature is not None:
        between = [
            name
            for name, _ in order[calls.index(feature) + 1 :]
            if name != head and not _is_inside(head, name) and not _is_inside(feature, name)
        ]
        if calls.count(feature) != 1 or any(
            any(True for _ in modules[name].parameters(recurse=False)) for name in between
        ):
            feature = None
    caught: dict[str, torch.Tensor] = {}
    hooks = [
        modules[head].register_forward_hook(lambda m, i, o: caught.update(head_in=i[0], head_out=o))
    ]
    if feature is not None:
        hooks.append(
            modules[feature].register_forward_hook(lambda m, i, o: caught.update(feature=o))
        )
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.randn(1, 3, size, size).clamp(0, 1))
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    if not torch.allclose(caught["head_out"], output, atol=1e-5):
        raise ConfigError(
            f"{spec}: its output is not its last linear layer's ({head!r}): fracdet cannot "
            "put a new head on it"
        )
    head_in = caught["head_in"]
    pooled = caught["feature"].mean(dim=(2, 3)) if feature is not None else None
    if pooled is not None and (
        pooled.shape != head_in.shape or not torch.allclose(pooled, head_in, atol=1e-5, rtol=1e-4)
    ):
        feature = None
    if feature is None:
        if head_in.ndim != 2:
            raise ConfigError(
                f"{spec}: its head reads a {head_in.ndim}-D input: fracdet cannot put a new "
                "head on it"
            )
        logger.info("%s: the new head reads the zoo head's input; inputs must be %d px", spec, size)
        return Probe(head, int(head_in.shape[1]), None, int(head_in.shape[1]), 1)
    channels, height = int(caught["feature"].shape[1]), int(caught["feature"].shape[2])
    return Probe(head, int(head_in.shape[1]), feature, channels, max(size // max(height, 1), 1))
