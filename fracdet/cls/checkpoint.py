"""Classifier checkpoints as data: ``NAME.safetensors`` weights beside ``NAME.json`` metadata.

Loading never unpickles (ARCHITECTURE invariant 3): weights come from safetensors, and the
JSON says which backbone to build (timm, or ``robustbench:DATASET/THREAT/NAME``), the image
size and resize, normalisation (``mean``/``std`` applied by fracdet's wrapper, and in
``backbone_info`` any the backbone applies itself), class names, the tuned threshold and the
temperature, so predict and the audit need nothing else.

A classifier fracdet did not train (``fracdet import-cls``, :mod:`fracdet.cls.importer`) is the
same pair with ``source`` naming where its architecture comes from (timm, torchvision) and
``imported`` its head, channels, Grad-CAM layer, origin and verification; a TorchScript model
keeps its file (``NAME.torchscript``) in place of the safetensors, read by ``torch.jit.load``
alone. Metadata written before these fields existed reads as ``source="fracdet"``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from fracdet.cls.model import PixelClassifier, create_classifier
from fracdet.errors import ConfigError
from fracdet.fsutil import atomic_write, atomic_write_text

__all__ = [
    "ClassifierMeta",
    "save_classifier",
    "load_classifier",
    "resolve_checkpoint",
    "unwrap_model",
    "FORMAT",
    "checkpoint_files",
    "classifier_files",
    "meta_to_json",
    "meta_from_json",
    "read_weights",
    "write_checkpoint",
    "TORCHSCRIPT_SUFFIX",
]

M = TypeVar("M")

logger = logging.getLogger(__name__)

FORMAT = "fracdet-classifier/1"
#: the suffix of an imported TorchScript classifier's file, beside its ``.json``
TORCHSCRIPT_SUFFIX = ".torchscript"


@dataclass(frozen=True)
class ClassifierMeta:
    """Everything needed to rebuild and use a classifier, saved as JSON next to the weights."""

    backbone: str
    class_names: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    threshold: float = 0.5
    temperature: float = 1.0
    global_pool: str | None = None
    backbone_args: dict[str, Any] = field(
        default_factory=dict
    )  # timm arguments beyond the name (an MAE encoder's size)
    resize: str = "letterbox"  # letterbox (aspect kept) | stretch (the robust-transfer study)
    backbone_info: dict[str, Any] = field(
        default_factory=dict
    )  # where weights and normalisation come from
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    data_hash: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    # inputs rounded to this many grey levels before the network (None: not at all); see
    # save_input_quantized
    input_levels: int | None = None
    # where the architecture comes from: fracdet (trained here: ``backbone`` is a timm or
    # robustbench name) | timm | torchvision | torchscript (imported by ``fracdet import-cls``)
    source: str = "fracdet"
    # an imported classifier's contract: arch, head (sigmoid | softmax), source_class_names,
    # fracture_index, channels, cam_layer (+ cam_channels), normalised_by, file, sha256, keys,
    # verification
    imported: dict[str, Any] = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        return len(self.class_names) == 2

    @property
    def num_outputs(self) -> int:
        return 1 if self.binary else len(self.class_names)

    @property
    def keep_aspect(self) -> bool:
        """Whether inputs are letterboxed (``True``) or stretched to the square."""
        return self.resize != "stretch"

    @property
    def input_std(self) -> tuple[float, ...]:
        """The std that turns a pixel change into the first layer's units (ε in ``normalized``
        space).

        fracdet's wrapper divides by ``std``; a backbone that normalises itself (RobustBench
        models with built-in mean/std) records its own in ``backbone_info``; the two compose.
        """
        inner = (self.backbone_info.get("normalization") or {}).get("std")
        if not inner:
            return self.std
        inner = tuple(float(v) for v in inner)
        if len(inner) == 1:
            inner = inner * len(self.std)
        return tuple(a * b for a, b in zip(self.std, inner, strict=True))

    def to_json(self) -> str:
        return meta_to_json(self, FORMAT)

    @classmethod
    def from_json(cls, text: str, path: Path) -> ClassifierMeta:
        return meta_from_json(
            cls,
            text,
            path,
            format=FORMAT,
            kind="classifier",
            tuples=("class_names", "mean", "std"),
        )


# --- the safetensors + JSON pair, shared with fracdet.mae's checkpoints ---------------------


def meta_to_json(meta: Any, format: str) -> str:
    """A metadata dataclass as the checkpoint's JSON, tagged with its ``format``."""
    return json.dumps({"format": format, **dataclasses.asdict(meta)}, indent=2, default=str)


def meta_from_json(
    cls: type[M],
    text: str,
    path: Path,
    *,
    format: str,
    kind: str,
    tuples: tuple[str, ...] = (),
    mappings: tuple[str, ...] = (),
    hint: str = "",
) -> M:
    """The metadata dataclass ``cls`` read back from its JSON, with one clear error per problem.

    The ``format`` tag must match (another model's checkpoint is named by its own tag); keys
    the dataclass does not know are ignored, ``tuples`` become tuples again and ``mappings``
    must be JSON objects. ``kind`` names the checkpoint in errors, ``hint`` says what to pass.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"checkpoint metadata is not valid JSON ({exc})", path) from exc
    if not isinstance(doc, dict) or doc.get("format") != format:
        found = doc.get("format") if isinstance(doc, dict) else None
        what = f"its format is {found!r}" if found else f'no "format": "{format}"'
        raise ConfigError(f"not a fracdet {kind} checkpoint ({what}){hint}", path)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    try:
        values = {k: v for k, v in doc.items() if k in names}
        for key in tuples:
            values[key] = tuple(values[key])
        for key in mappings:
            if not isinstance(values[key], dict):
                raise TypeError(f"{key} is not a mapping")
        return cls(**values)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"checkpoint metadata is incomplete ({exc})", path) from exc


def checkpoint_files(path: str | Path, *, kind: str, article: str = "a") -> tuple[Path, Path]:
    """``(weights, metadata)`` from a run folder (its ``best``), a ``.safetensors`` or a
    ``.json``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "best.safetensors"
    if path.suffix not in (".safetensors", ".json"):
        raise ConfigError(
            f"{article} {kind} checkpoint is a .safetensors file with a .json beside it "
            "(or its run folder)",
            path,
        )
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for needed in (weights, meta):
        if not needed.is_file():
            raise ConfigError(f"{kind} checkpoint file not found", needed)
    return weights, meta


def read_weights(weights: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's safetensors state dict on the CPU (never unpickled), or a clear error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"not a readable safetensors file ({exc})", weights) from exc


def write_checkpoint(
    model: torch.nn.Module, meta_json: str, path: Path, *, file_metadata: dict[str, str]
) -> Path:
    """Write the backbone's weights to ``path`` (.safetensors), then ``meta_json`` beside it.

    Each goes through a temporary file, then is renamed; the weights go first: a run
    interrupted in between pairs new weights with the previous epoch's metadata, which
    describes the same architecture.
    """
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    state = {
        k: v.detach().contiguous().cpu()
        for k, v in unwrap_model(model).backbone.state_dict().items()
    }
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=file_metadata))
    atomic_write_text(path.with_suffix(".json"), meta_json)
    return path


# --- classifiers ------------------------------------------------------------------------------


def classifier_files(path: str | Path) -> tuple[Path, ...]:
    """The files a classifier is read from (what a run records the sha256 of): the ``.onnx`` of
    an exported model, else the safetensors weights and their JSON.
    """
    from fracdet.cls.onnx import find_onnx_file

    onnx_file = find_onnx_file(path)
    return (onnx_file,) if onnx_file is not None else resolve_checkpoint(path)


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths from a run folder, a ``.safetensors``, a ``.torchscript``
    (an imported TorchScript classifier) or a ``.json`` file."""
    path = Path(path)
    if path.suffix == ".pt":
        raise ConfigError(
            "this looks like an Ultralytics detector (.pt), not a fracdet classifier: "
            "pass it with --det",
            path,
        )
    base = path / "best" if path.is_dir() else path.with_suffix("")
    scripted = base.with_suffix(TORCHSCRIPT_SUFFIX)
    if path.suffix == TORCHSCRIPT_SUFFIX or (
        path.suffix != ".safetensors"
        and scripted.is_file()
        and not base.with_suffix(".safetensors").is_file()
    ):
        for needed in (scripted, scripted.with_suffix(".json")):
            if not needed.is_file():
                raise ConfigError("classifier checkpoint file not found", needed)
        return scripted, scripted.with_suffix(".json")
    return checkpoint_files(path, kind="classifier")


def save_classifier(model: PixelClassifier, meta: ClassifierMeta, path: Path) -> Path:
    """Write ``path`` (.safetensors) and its ``.json``, weights first (:func:`write_checkpoint`)."""
    return write_checkpoint(
        model, meta.to_json(), path, file_metadata={"format": FORMAT, "backbone": meta.backbone}
    )


def load_classifier(
    path: str | Path, *, device: str | torch.device = "cpu", gradients: bool = False
) -> tuple[PixelClassifier, ClassifierMeta]:
    """Rebuild the model from the JSON and load the safetensors weights strictly, in eval mode.

    An ONNX model from ``fracdet export`` (a ``.onnx`` file or its export folder) loads as an
    :class:`~fracdet.cls.onnx.OnnxClassifier` run by onnxruntime, with the metadata stored in
    it; a caller that needs ``gradients`` (attacks, attributions) gets a clear error instead.
    """
    from fracdet.cls.onnx import NEEDS_PYTORCH, OnnxClassifier, find_onnx_file

    onnx_file = find_onnx_file(path)
    if onnx_file is not None:
        if gradients:
            raise ConfigError(f"an ONNX model: {NEEDS_PYTORCH}", path)
        runner = OnnxClassifier(onnx_file, device=device)
        meta = ClassifierMeta.from_json(runner.meta_json, onnx_file)
        return runner, meta  # type: ignore[return-value]
    weights, meta_path = resolve_checkpoint(path)
    meta = ClassifierMeta.from_json(meta_path.read_text(encoding="utf-8"), meta_path)
    if meta.source != "fracdet":
        from fracdet.cls.imported import imported_classifier

        state = None if meta.source == "torchscript" else read_weights(weights)
        model = imported_classifier(meta, weights, state)
        model.input_levels = meta.input_levels
        return model.to(device).eval(), meta
    state = read_weights(weights)
    model = create_classifier(
        meta.backbone,
        num_outputs=meta.num_outputs,
        image_size=meta.image_size,
        global_pool=meta.global_pool,
        backbone_args=meta.backbone_args,
    )
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise ConfigError(
            f"weights do not match backbone {meta.backbone!r} named in {meta_path.name} "
            f"({first[:200]})",
            weights,
        ) from exc
    model.mean.copy_(torch.tensor(meta.mean).view(1, -1, 1, 1))
    model.std.copy_(torch.tensor(meta.std).view(1, -1, 1, 1))
    model.input_levels = meta.input_levels
    return model.to(device).eval(), meta


def save_input_quantized(source: str | Path, output: Path, levels: int = 16) -> Path:
    """A copy of the classifier at ``source`` whose inputs are rounded to ``levels`` grey levels
    (``OUTPUT/best.safetensors``); returns its path.

    Bit-depth reduction ("feature squeezing", Xu et al., NDSS 2018) leaves the decision almost
    unchanged and every input gradient zero: PGD finds nothing and reports robustness the
    model does not have ("shattered gradients", Athalye et al., ICML 2018). The demo audits
    such a copy to show that the attack checks flag it.
    """
    from fracdet.robust.masking import check_levels

    try:
        levels = check_levels(levels)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    model, meta = load_classifier(source)
    if meta.source == "torchscript":
        raise ConfigError(
            "an imported TorchScript classifier keeps its own file; quantise a state dict import",
            source,
        )
    meta = dataclasses.replace(meta, input_levels=levels)
    return save_classifier(model, meta, Path(output) / "best.safetensors")


def unwrap_model(model: torch.nn.Module) -> PixelClassifier:
    """The plain model inside DDP / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model  # type: ignore[return-value]
