"""``fracdet import-cls``: a PyTorch classifier fracdet did not train becomes a fracdet classifier.

The output folder is a classifier checkpoint like ``train-cls`` writes (``best.safetensors`` +
``best.json``; a TorchScript model keeps its file as ``best.torchscript``), so ``eval-cls``,
``audit`` and ``predict`` take it unchanged. What the import promises is checked before the
folder appears: the checkpoint is read back as those commands read it, and its fracture
probabilities on seeded random images are compared with the original network's (the maximum
absolute difference is printed and stored in ``best.json``).

Weights are data (ARCHITECTURE invariant 3): a state dict is read by safetensors or
``torch.load(weights_only=True)``; a TorchScript file by ``torch.jit.load`` only.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from fracdet.cls.card import card_from_classifier_checkpoint
from fracdet.cls.checkpoint import (
    TORCHSCRIPT_SUFFIX,
    ClassifierMeta,
    load_classifier,
    save_classifier,
)
from fracdet.cls.imported import (
    HEADS,
    ImportedNet,
    build_architecture,
    clean_state_keys,
    find_cam_layer,
    load_torchscript,
    parse_arch,
)
from fracdet.cls.model import IMAGENET_MEAN, IMAGENET_STD, PixelClassifier
from fracdet.cls.state_files import load_state_dict_file
from fracdet.config import load_yaml
from fracdet.data.geometry import RESIZE_MODES
from fracdet.data.manifest import LABEL_NAMES
from fracdet.errors import ConfigError
from fracdet.fsutil import atomic_output_dir, atomic_write_text, sha256_file
from fracdet.provenance import versions
from fracdet.report.model_card import write_model_card

__all__ = ["ImportClsConfig", "ImportClsSummary", "import_classifier"]

logger = logging.getLogger(__name__)

#: the largest difference between imported and original fracture probabilities an import
#: accepts: float32 round-off, never a different function
TOLERANCE = 1e-5


@dataclass(frozen=True)
class ImportClsConfig:
    """Everything ``fracdet import-cls`` needs (``configs/import_cls.yaml``)."""

    config_section: ClassVar[str] = "import_cls"

    source: Path  # the state dict (.pth/.pt/.bin/.safetensors) or TorchScript file
    arch: str  # timm:NAME | torchvision:NAME | torchscript
    output: Path = Path("weights/imported")
    input_size: int = 224
    resize: str = "letterbox"  # letterbox (aspect kept) | stretch (to the square)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    # wrapper: fracdet normalises with mean/std before the network | model: the network does
    # itself (mean/std, if given, are then only recorded: they set ε's normalized units)
    normalize: str = "wrapper"
    channels: int = 3  # what the network takes: 3, or 1 (grey)
    head: str = "sigmoid"  # sigmoid (one fracture logit) | softmax (class_names, fracture_index)
    class_names: tuple[str, ...] = ()
    fracture_index: int | None = None
    threshold: float = 0.5
    strip_prefixes: tuple[str, ...] = ("module.", "model.")
    rename_map: Path | None = None  # YAML/JSON {old key or prefix.: new key or prefix.}
    allow_missing: bool = False  # load although the state dict lacks some of the net's keys
    allow_unexpected: bool = False  # load although the state dict has keys the net lacks
    cam_layer: str | None = None  # the layer Grad-CAM hooks (default: found, see find_cam_layer)
    samples: int = 4  # seeded random images of the verification
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        spec = parse_arch(self.arch)
        checks = [
            (self.input_size >= 8, f"input_size must be at least 8, got {self.input_size}"),
            (self.resize in RESIZE_MODES, f"resize must be one of {', '.join(RESIZE_MODES)}"),
            (self.normalize in ("wrapper", "model"), "normalize must be wrapper or model"),
            (self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}"),
            (self.head in HEADS, f"head must be one of {', '.join(HEADS)}, got {self.head!r}"),
            (len(self.mean) in (1, 3), f"mean needs 1 or 3 values, got {len(self.mean)}"),
            (len(self.std) == len(self.mean), "std needs as many values as mean"),
            (all(s > 0 for s in self.std), f"std must be positive, got {list(self.std)}"),
            (0.0 < self.threshold < 1.0, f"threshold must be in (0, 1), got {self.threshold}"),
            (self.samples >= 1, f"samples must be at least 1, got {self.samples}"),
            (
                spec.source != "torchscript"
                or not (self.rename_map or self.allow_missing or self.allow_unexpected),
                "rename_map / allow_missing / allow_unexpected apply to state dicts, "
                "not to a TorchScript file",
            ),
        ]
        if self.head == "softmax":
            n = len(self.class_names)
            checks += [
                (n >= 2, "a softmax head needs --class-names (two or more, in output order)"),
                (len(set(self.class_names)) == n, f"class names twice: {list(self.class_names)}"),
                (self.fracture_index is not None, "a softmax head needs --fracture-index"),
            ]
            if n >= 2 and self.fracture_index is not None:
                checks.append(
                    (
                        0 <= self.fracture_index < n,
                        f"fracture index {self.fracture_index} is out of range for "
                        f"{n} classes {list(self.class_names)} (0 to {n - 1})",
                    )
                )
        else:
            checks.append(
                (
                    not self.class_names and self.fracture_index is None,
                    "a sigmoid head has one fracture logit: --class-names and --fracture-index "
                    "are for --head softmax",
                )
            )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def num_classes(self) -> int:
        """The network's outputs: 1 (sigmoid) or one per class (softmax)."""
        return len(self.class_names) if self.head == "softmax" else 1


@dataclass(frozen=True)
class ImportClsSummary:
    """What :func:`import_classifier` wrote and how well the copy matches the original."""

    output: Path
    checkpoint: Path
    arch: str
    head: str
    max_abs_diff: float  # fracture probability, imported vs original, on the seeded samples
    max_abs_diff_logit: float
    samples: int
    cam_layer: str | None

    def line(self) -> str:
        cam = f"Grad-CAM layer {self.cam_layer}" if self.cam_layer else "no Grad-CAM layer"
        return (
            f"imported {self.arch} ({self.head} head, {cam}): max |Δp| {self.max_abs_diff:.2e}, "
            f"max |Δlogit| {self.max_abs_diff_logit:.2e} on {self.samples} seeded images; "
            f"classifier: {self.checkpoint}"
        )


def import_classifier(cfg: ImportClsConfig) -> ImportClsSummary:
    """Build, save, read back and verify ``cfg.source`` as a classifier folder ``cfg.output``."""
    spec = parse_arch(cfg.arch)
    source = Path(cfg.source)
    if not source.is_file():
        raise ConfigError("model file not found", source)
    original, keys = _original_network(cfg, spec.source, source)
    sample = _samples(cfg)
    mean, std = _three(cfg.mean), _three(cfg.std)
    inner = (0.0,) * 3, (1.0,) * 3
    wrap_mean, wrap_std = (mean, std) if cfg.normalize == "wrapper" else inner
    reference = _reference_outputs(
        original,
        cfg,
        (sample - torch.tensor(wrap_mean).view(1, 3, 1, 1))
        / torch.tensor(wrap_std).view(1, 3, 1, 1),
    )
    cam = find_cam_layer(original, _net_input(sample, cfg.channels), cfg.cam_layer)
    net = ImportedNet(
        original,
        head=cfg.head,
        num_classes=cfg.num_classes,
        fracture_index=cfg.fracture_index or 0,
        channels=cfg.channels,
        cam_layer=cam[0] if cam else None,
        cam_channels=cam[1] if cam else None,
    )
    model = PixelClassifier(net, mean=wrap_mean, std=wrap_std)
    sha = sha256_file(source)
    meta = ClassifierMeta(
        backbone=spec.label,
        class_names=LABEL_NAMES,
        image_size=cfg.input_size,
        mean=wrap_mean,
        std=wrap_std,
        threshold=cfg.threshold,
        resize=cfg.resize,
        backbone_info={
            "weights": {"source": "imported file", "file": str(source), "sha256": sha},
            **({"normalization": {"mean": mean, "std": std}} if cfg.normalize == "model" else {}),
        },
        versions=versions(),
        source=spec.source,
        imported={
            "arch": spec.label,
            "head": cfg.head,
            "num_classes": cfg.num_classes,
            "source_class_names": list(cfg.class_names) or ["fracture logit"],
            "fracture_index": cfg.fracture_index or 0,
            "channels": cfg.channels,
            "normalised_by": cfg.normalize,
            "cam_layer": cam[0] if cam else None,
            "cam_channels": cam[1] if cam else None,
            "file": str(source),
            "sha256": sha,
            "keys": keys,
        },
    )
    with atomic_output_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        checkpoint = _write(model, meta, source, tmp)
        loaded, _ = load_classifier(checkpoint)
        with torch.no_grad():
            imported_logit = loaded(sample).double()
        diff_logit = float((imported_logit - reference).abs().max())
        diff_p = float((torch.sigmoid(imported_logit) - torch.sigmoid(reference)).abs().max())
        verification = {
            "samples": cfg.samples,
            "seed": cfg.seed,
            "input": f"uniform [0, 1] pixels, ({cfg.samples}, 3, {cfg.input_size}, "
            f"{cfg.input_size})",
            "max_abs_diff_probability": diff_p,
            "max_abs_diff_logit": diff_logit,
            "tolerance": TOLERANCE,
            "reference": "the original network on the same images, normalised outside it",
        }
        if not diff_p <= TOLERANCE:
            raise ConfigError(
                f"the imported classifier differs from the original (max |Δp| {diff_p:.3g} > "
                f"{TOLERANCE:g}); nothing was written",
                source,
            )
        meta = dataclasses.replace(meta, imported={**meta.imported, "verification": verification})
        atomic_write_text(checkpoint.with_suffix(".json"), meta.to_json())
    final = cfg.output / checkpoint.name
    write_model_card(cfg.output, card_from_classifier_checkpoint(final))
    summary = ImportClsSummary(
        output=cfg.output,
        checkpoint=final,
        arch=spec.label,
        head=cfg.head,
        max_abs_diff=diff_p,
        max_abs_diff_logit=diff_logit,
        samples=cfg.samples,
        cam_layer=cam[0] if cam else None,
    )
    logger.debug("%s", summary.line())
    return summary


def _three(values: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in values) * (3 if len(values) == 1 else 1)


def _samples(cfg: ImportClsConfig) -> torch.Tensor:
    generator = torch.Generator().manual_seed(cfg.seed)
    return torch.rand(cfg.samples, 3, cfg.input_size, cfg.input_size, generator=generator)


def _net_input(normalised: torch.Tensor, channels: int) -> torch.Tensor:
    return normalised.mean(dim=1, keepdim=True) if channels == 1 else normalised


def _original_network(
    cfg: ImportClsConfig, source_kind: str, source: Path
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The user's network, in eval mode, with its weights; and what the key clean-up did."""
    if source_kind == "torchscript":
        return load_torchscript(source).eval(), {}
    state = load_state_dict_file(source)
    rename = _rename_map(cfg.rename_map)
    state = clean_state_keys(state, strip_prefixes=cfg.strip_prefixes, rename=rename)
    net = build_architecture(parse_arch(cfg.arch), cfg.num_classes, cfg.channels)
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if mismatched:
        key = mismatched[0]
        raise ConfigError(
            f"shapes do not fit {cfg.arch}: {len(mismatched)} tensors, first {key} is "
            f"{tuple(state[key].shape)} in the file, {tuple(own[key].shape)} in the network"
            + (
                f" (built with {cfg.num_classes} outputs: check --head / --class-names)"
                if key in _head_keys(net)
                else ""
            ),
            source,
        )
    problems = [
        f"missing {len(missing)} keys ({_few(missing)}; --allow-missing loads without them)"
        if missing and not cfg.allow_missing
        else "",
        f"{len(unexpected)} unexpected keys ({_few(unexpected)}; --allow-unexpected drops them)"
        if unexpected and not cfg.allow_unexpected
        else "",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError(
            f"state dict does not fit {cfg.arch}: {'; '.join(problems)}; "
            "--strip-prefix and --rename-map fix key names",
            source,
        )
    net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    for key in missing:
        logger.warning("%s: %s keeps its random initialisation (--allow-missing)", source, key)
    return net.eval(), {
        "loaded": len(own) - len(missing),
        "missing": missing,
        "unexpected_dropped": unexpected,
        "strip_prefixes": list(cfg.strip_prefixes),
        "rename_map": {str(k): str(v) for k, v in (rename or {}).items()},
    }


def _head_keys(net: torch.nn.Module) -> set[str]:
    """The state keys of the network's last layer with parameters (its classifier head)."""
    last = [name for name, m in net.named_modules() if list(m.parameters(recurse=False))][-1:]
    return {k for k in net.state_dict() for name in last if k.startswith(f"{name}.")}


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _rename_map(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    doc = load_yaml(path, what="rename map")
    if not all(isinstance(v, str) for v in doc.values()):
        raise ConfigError("rename map must map key names to key names (text: text)", path)
    return doc


def _reference_outputs(
    net: torch.nn.Module, cfg: ImportClsConfig, normalised: torch.Tensor
) -> torch.Tensor:
    """The original network's fracture logits (float64), computed apart from ImportedNet.

    Also where a network that is not a classifier of the promised shape is refused.
    """
    with torch.no_grad():
        try:
            out = net(_net_input(normalised, cfg.channels))
        except Exception as exc:  # noqa: BLE001 - any failure of a foreign network is its own
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ConfigError(
                f"the model does not run on a ({cfg.samples}, {cfg.channels}, {cfg.input_size}, "
                f"{cfg.input_size}) input ({type(exc).__name__}: {first})",
                cfg.source,
            ) from exc
    want = (cfg.samples, cfg.num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"not a classifier of the given head: it outputs {got} for {cfg.samples} images, "
            f"expected {want} ({cfg.head} head"
            + (f", {cfg.num_classes} classes)" if cfg.head == "softmax" else ", one logit)"),
            cfg.source,
        )
    out = out.double()
    if cfg.head == "sigmoid":
        return out[:, 0]
    probability = torch.softmax(out, dim=1)[:, cfg.fracture_index]
    return torch.log(probability) - torch.log1p(-probability)


def _write(model: PixelClassifier, meta: ClassifierMeta, source: Path, folder: Path) -> Path:
    """The checkpoint in ``folder``: safetensors + JSON, or the TorchScript file + JSON."""
    if meta.source == "torchscript":
        path = folder / f"best{TORCHSCRIPT_SUFFIX}"
        shutil.copyfile(source, path)
        atomic_write_text(path.with_suffix(".json"), meta.to_json())
        return path
    return save_classifier(model, meta, folder / "best.safetensors")
