"""Classifiers fracdet did not train, as backbones of :class:`~fracdet.cls.model.PixelClassifier`.

A timm or torchvision architecture (with the user's state dict) or a TorchScript file becomes
an :class:`ImportedNet`: it takes the normalised input the wrapper hands it and returns ONE
fracture logit, so the audit, predict and eval-cls, which score fracture classifiers, take it
like fracdet's own. A K-class softmax head gives ``z_f - logsumexp(z_others)``, the logit of
the softmax probability of the fractured class (exact: ``sigmoid`` of it is that probability),
differentiable, so attacks and attributions see the same function.

Grad-CAM finds its layer through ``feature_info``, as for timm backbones
(:func:`fracdet.explain.gradcam.gradcam_target`): :class:`ImportedNet` names one layer there,
the one the user gave (``--cam-layer``) or :func:`find_cam_layer`'s. A TorchScript model runs
as a compiled graph where Python hooks never fire, so it has none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fracdet.cls.model import PixelClassifier
from fracdet.errors import ConfigError

__all__ = [
    "ARCH_SOURCES",
    "HEADS",
    "ImportedNet",
    "ArchSpec",
    "parse_arch",
    "build_architecture",
    "load_torchscript",
    "find_cam_layer",
    "clean_state_keys",
    "imported_classifier",
]

logger = logging.getLogger(__name__)

#: where an imported architecture comes from (``ClassifierMeta.source``)
ARCH_SOURCES = ("timm", "torchvision", "torchscript")
#: how the imported network's outputs become the fracture logit
HEADS = ("sigmoid", "softmax")


@dataclass(frozen=True)
class ArchSpec:
    """``timm:NAME``, ``torchvision:NAME`` or ``torchscript`` as parsed."""

    source: str
    name: str = ""

    @property
    def label(self) -> str:
        return f"{self.source}:{self.name}" if self.name else self.source


def parse_arch(text: str) -> ArchSpec:
    """``timm:resnet18`` / ``torchvision:resnet18`` / ``torchscript`` -> :class:`ArchSpec`."""
    source, _, name = str(text).strip().partition(":")
    source = source.lower()
    if source == "torchscript" and not name:
        return ArchSpec("torchscript")
    if source in ("timm", "torchvision") and name:
        return ArchSpec(source, name)
    raise ConfigError(
        f"unknown architecture {text!r}: give timm:NAME, torchvision:NAME or torchscript"
    )


class ImportedNet(nn.Module):
    """An imported network behind fracdet's contract: normalised input, one fracture logit.

    ``channels`` is what the network takes (1: the three identical grey channels the wrapper
    makes are averaged back to one). ``cam_layer`` (a module name inside ``net``) is exposed
    as timm's ``feature_info`` so Grad-CAM hooks it; ``cam_channels`` is its channel count.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        head: str,
        num_classes: int,
        fracture_index: int = 0,
        channels: int = 3,
        cam_layer: str | None = None,
        cam_channels: int | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
        self.net = net
        self.head = head
        self.source_classes = int(num_classes)
        self.fracture_index = int(fracture_index)
        self.channels = int(channels)
        self.num_classes = 1  # what PixelClassifier reads: one fracture logit
        if cam_layer and cam_channels:
            self.feature_info = [{"module": f"net.{cam_layer}", "num_chs": int(cam_channels)}]

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The imported network's own output on a normalised ``(B, 3, H, W)`` input."""
        if self.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.raw(x)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"imported network gave {shape}, not (B, classes) logits")
        return fracture_logit(out, self.head, self.fracture_index).unsqueeze(1)


def fracture_logit(out: torch.Tensor, head: str, fracture_index: int) -> torch.Tensor:
    """``(B,)`` fracture logits from a network's ``(B, K)`` outputs (see the module docstring)."""
    if head == "sigmoid":
        return out[:, 0]
    keep = [i for i in range(out.shape[1]) if i != fracture_index]
    return out[:, fracture_index] - torch.logsumexp(out[:, keep], dim=1)


def build_architecture(spec: ArchSpec, num_classes: int, channels: int = 3) -> nn.Module:
    """A randomly initialised ``spec`` network with ``num_classes`` outputs (nothing downloaded).

    ``channels`` is timm's ``in_chans``; torchvision builds three, so a grey torchvision model's
    first layer shows up as a shape that does not fit.
    """
    if spec.source == "timm":
        import timm

        from fracdet.cls.model import close_backbones

        if not timm.is_model(spec.name):
            raise ConfigError(
                f"unknown timm architecture {spec.name!r}{close_backbones(spec.name)}"
            )
        return timm.create_model(
            spec.name, pretrained=False, num_classes=num_classes, in_chans=channels
        )
    if spec.source == "torchvision":
        import difflib

        import torchvision

        names = torchvision.models.list_models()
        if spec.name not in names:
            close = difflib.get_close_matches(spec.name, names, n=5, cutoff=0.6)
            hint = f" (close matches: {', '.join(close)})" if close else ""
            raise ConfigError(
                f"unknown torchvision architecture {spec.name!r}{hint}; "
                "see torchvision.models.list_models()"
            )
        try:
            return torchvision.models.get_model(spec.name, weights=None, num_classes=num_classes)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"cannot build torchvision {spec.name!r} with {num_classes} outputs ({exc})"
            ) from exc
    raise ConfigError(f"{spec.label} is not an architecture fracdet builds")


def load_torchscript(path: Path) -> nn.Module:
    """A TorchScript file by ``torch.jit.load`` on the CPU (its code is TorchScript, never Python),
    or a clear error."""
    import warnings

    path = Path(path)
    if not path.is_file():
        raise ConfigError("TorchScript file not found", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.9+: "jit is deprecated"
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/ValueError/zip errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"not a TorchScript file ({first})", path) from exc


def find_cam_layer(
    net: nn.Module, sample: torch.Tensor, wanted: str | None = None
) -> tuple[str, int] | None:
    """``(module name, channels)`` of the layer Grad-CAM should hook in ``net``, or ``None``.

    ``wanted`` (``--cam-layer``) must exist and give a ``(B, C, h, w)`` map. Without it: the
    last direct child of ``net``, in the order the children run, that has parameters and gives
    such a map (resnet: ``layer4``; vgg, densenet: ``features``), the spot timm's
    ``feature_info`` names for its own models.
    """
    if isinstance(net, torch.jit.ScriptModule):
        if wanted:
            raise ConfigError(
                f"--cam-layer {wanted!r}: a TorchScript model runs as a compiled graph, so "
                "Grad-CAM cannot hook its layers; import its architecture and state dict instead"
            )
        return None
    modules = dict(net.named_modules())
    if wanted and wanted not in modules:
        close = [n for n in modules if n and n.split(".")[-1] == wanted.split(".")[-1]][:5]
        hint = f" (layers with that name: {', '.join(close)})" if close else ""
        raise ConfigError(f"--cam-layer {wanted!r} is not a layer of the network{hint}")
    if wanted:
        candidates = {wanted: modules[wanted]}
    else:
        candidates = {
            name: child
            for name, child in net.named_children()
            if any(True for _ in child.parameters())
        }
    order: list[tuple[str, tuple[int, ...]]] = []
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: order.append(
                (name, tuple(out.shape) if isinstance(out, torch.Tensor) else ())
            )
        )
        for name, module in candidates.items()
    ]
    try:
        with torch.no_grad():
            net(sample)
    finally:
        for handle in handles:
            handle.remove()
    maps = [(name, shape) for name, shape in order if len(shape) == 4]
    if wanted:
        if not maps:
            got = order[-1][1] if order else "no output"
            raise ConfigError(
                f"--cam-layer {wanted!r} gives {got}, not a (B, C, h, w) feature map for Grad-CAM"
            )
        return wanted, maps[-1][1][1]
    return (maps[-1][0], maps[-1][1][1]) if maps else None


def clean_state_keys(
    state: Mapping[str, torch.Tensor],
    *,
    strip_prefixes: tuple[str, ...] = (),
    rename: Mapping[str, str] | None = None,
) -> dict[str, torch.Tensor]:
    """Keys of a foreign state dict made the architecture's own.

    Each of ``strip_prefixes`` is removed where EVERY key starts with it (DataParallel's
    ``module.``, a Lightning module's ``model.``), so a state whose own layers happen to start
    with the word keeps them. ``rename`` then maps exact keys, or prefixes where both sides end
    in ``.``; an entry that matches no key is an error, never silently ignored.
    """
    state = dict(state)
    for prefix in strip_prefixes:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    for old, new in (rename or {}).items():
        if old.endswith(".") and new.endswith("."):
            hits = [k for k in state if k.startswith(old)]
            state = {(new + k[len(old) :] if k in hits else k): v for k, v in state.items()}
        else:
            hits = [old] if old in state else []
            if hits:
                state[new] = state.pop(old)
        if not hits:
            raise ConfigError(f"rename map: {old!r} matches no key of the state dict")
    return state


def imported_classifier(
    meta: Any, weights: Path, state: Mapping[str, torch.Tensor] | None
) -> PixelClassifier:
    """The pixel-space classifier an imported checkpoint's metadata (``ClassifierMeta``) names.

    ``state`` is the ``.safetensors`` state dict (``None`` for TorchScript, read from
    ``weights``); it must fit the architecture exactly.
    """
    info = meta.imported
    if meta.source == "torchscript":
        net: nn.Module = load_torchscript(weights)
    else:
        net = build_architecture(
            parse_arch(meta.backbone), int(info["num_classes"]), int(info.get("channels", 3))
        )
    backbone = ImportedNet(
        net,
        head=str(info["head"]),
        num_classes=int(info["num_classes"]),
        fracture_index=int(info.get("fracture_index", 0)),
        channels=int(info.get("channels", 3)),
        cam_layer=info.get("cam_layer"),
        cam_channels=info.get("cam_channels"),
    )
    if state is not None:
        try:
            backbone.load_state_dict(dict(state), strict=True)
        except RuntimeError as exc:
            first = next(
                (line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc)
            )
            raise ConfigError(
                f"weights do not match the imported architecture {meta.backbone!r} ({first[:200]})",
                weights,
            ) from exc
    return PixelClassifier(backbone, mean=meta.mean, std=meta.std)
