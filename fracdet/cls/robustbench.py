"""RobustBench backbones for the classifier track: ``robustbench:DATASET/THREAT/NAME``.

The robust-transfer study froze RobustBench's adversarially trained CIFAR-10 WideResNets and
trained a linear head on radiographs. Here any model of the RobustBench zoo becomes a
backbone of :class:`~fracdet.cls.model.PixelClassifier`:

* **weights** come from the zoo (``--pretrained``: RobustBench's ``model_dir``, ``./models``
  by default, downloaded into it when online), from a local checkpoint (``--weights FILE``, a
  ``.pt`` as the zoo ships it or a ``.safetensors`` state dict; ``--weights DIR``, a
  RobustBench ``model_dir``), or nowhere (random initialisation, for tests and smoke runs);
* **normalisation** is the model's own: RobustBench feeds every model [0, 1] pixels and
  models that expect normalised inputs carry their mean/std inside. fracdet's wrapper
  therefore adds none (mean 0, std 1), and what the model does is recorded in the
  checkpoint JSON (``backbone_info``);
* **the head** is replaced by a new linear layer on the model's pooled features. The zoo
  models pool with fixed windows sized for their native input (``avg_pool2d(out, 8)`` at
  32 px), which breaks at 224 px; a probe at the native size finds the last feature map and
  checks that a global average of it is exactly what the original head reads, so the new
  head sees the same features at the native size and well-defined ones at any other.

``robustbench`` is an optional dependency (``pip install fracdet[robustbench]``, then
``pip install --no-deps robustbench==1.1.1``: its own pins would downgrade timm; see the
README); nothing here imports it until a RobustBench backbone is asked for, and then only its
model zoo and checkpoint loader (:func:`_import_robustbench`).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import logging
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fracdet.cls.state_files import hub_reachable, load_state_dict_file
from fracdet.errors import ConfigError

__all__ = [
    "PREFIX",
    "DATASETS",
    "THREATS",
    "DEFAULT_MODEL_DIR",
    "RobustBenchSpec",
    "RobustBenchBackbone",
    "is_robustbench",
    "robustbench_spec",
    "parse_spec",
    "create_robustbench_backbone",
]

logger = logging.getLogger(__name__)

PREFIX = "robustbench:"
DATASETS = ("cifar10", "cifar100", "imagenet")
THREATS = ("Linf", "L2", "corruptions")
#: The input size each zoo was trained and benchmarked at: the probe runs there.
NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "imagenet": 224}
#: RobustBench's own default ``model_dir`` (``load_model(model_dir="./models")``).
DEFAULT_MODEL_DIR = Path("models")
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
_POOLS = ("avg", "max", "avgmax")
_INSTALL_HINT = "pip install 'fracdet[robustbench]' && pip install --no-deps robustbench==1.1.1 (see the README)"


@dataclass(frozen=True)
class RobustBenchSpec:
    """One zoo entry: RobustBench's dataset, threat model and model name."""

    dataset: str
    threat: str
    name: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.dataset}/{self.threat}/{self.name}"

    def checkpoint_in(self, model_dir: Path) -> Path:
        """Where RobustBench keeps this model's checkpoint under ``model_dir``."""
        return Path(model_dir) / self.dataset / self.threat / f"{self.name}.pt"


def is_robustbench(backbone: str) -> bool:
    """Whether ``backbone`` names a RobustBench model (``robustbench:...``)."""
    return backbone.startswith(PREFIX)


def parse_spec(
    backbone: str, dataset: str | None = None, threat: str | None = None
) -> RobustBenchSpec:
    """``robustbench:NAME`` (with ``dataset``/``threat``, default cifar10/Linf) or ``robustbench:DATASET/THREAT/NAME``.

    A full name and an explicit ``dataset``/``threat`` that disagree are an error: neither
    silently wins.
    """
    if not is_robustbench(backbone):
        raise ConfigError(f"not a RobustBench backbone: {backbone!r} (expected {PREFIX}MODEL_NAME)")
    rest = backbone[len(PREFIX) :]
    parts = rest.split("/")
    if len(parts) == 3:
        named_dataset, named_threat, name = parts
        for option, given, named in (
            ("rb_dataset", dataset, named_dataset),
            ("rb_threat", threat, named_threat),
        ):
            if given is not None and given != named:
                raise ConfigError(
                    f"backbone {backbone!r} names {named!r} but {option} is {given!r}: give one of them"
                )
        dataset, threat = named_dataset, named_threat
    elif len(parts) == 1:
        name = parts[0]
    else:
        raise ConfigError(
            f"cannot read RobustBench backbone {backbone!r}: expected {PREFIX}NAME or {PREFIX}DATASET/THREAT/NAME"
        )
    dataset, threat = dataset or "cifar10", threat or "Linf"
    if not name:
        raise ConfigError(
            f"RobustBench backbone {backbone!r} names no model (e.g. {PREFIX}Standard)"
        )
    if dataset not in DATASETS:
        raise ConfigError(
            f"unknown RobustBench dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
        )
    if threat not in THREATS:
        raise ConfigError(
            f"unknown RobustBench threat model {threat!r}; choose one of {', '.join(THREATS)}"
        )
    return RobustBenchSpec(dataset, threat, name)


def robustbench_spec(backbone: str, dataset: str | None = None, threat: str | None = None) -> str:
    """The canonical ``robustbench:DATASET/THREAT/NAME`` that checkpoints record."""
    return str(parse_spec(backbone, dataset, threat))


# --- the zoo ---------------------------------------------------------------------------------


def _import_robustbench() -> None:
    """Make ``robustbench.model_zoo`` and ``robustbench.utils`` importable.

    robustbench 1.1.1's ``__init__`` imports its benchmark stack too: autoattack, pandas and
    ``pkg_resources``, which setuptools >= 81 no longer ships. fracdet uses only the zoo (its
    architectures) and ``load_model``, which need none of these; when the full import fails
    for them, the package is registered without running its ``__init__`` so the zoo loads
    beside current setuptools and timm.
    """
    try:
        with warnings.catch_warnings():  # its architectures import timm's deprecated module paths
            warnings.simplefilter("ignore", FutureWarning)
            import robustbench  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name == "robustbench":
            raise ConfigError(
                f"RobustBench backbones need the optional robustbench package: {_INSTALL_HINT}"
            ) from exc
        _register_without_init(exc)
    except ImportError as exc:
        _register_without_init(exc)


def _register_without_init(reason: ImportError) -> None:
    spec = importlib.util.find_spec("robustbench")
    if spec is None or spec.submodule_search_locations is None:
        raise ConfigError(
            f"RobustBench backbones need the optional robustbench package: {_INSTALL_HINT}"
        ) from reason
    logger.debug("robustbench's own import failed (%s): loading its model zoo alone", reason)
    sys.modules["robustbench"] = importlib.util.module_from_spec(spec)


def _zoo() -> dict[Any, Any]:
    """RobustBench's model dictionaries, or a clear error when the package or the zoo's needs are missing."""
    _import_robustbench()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            from robustbench.model_zoo import model_dicts
    except ImportError as exc:
        raise ConfigError(
            f"RobustBench's model zoo cannot be imported ({exc}): {_INSTALL_HINT}"
        ) from exc
    return model_dicts


def _entries(spec: RobustBenchSpec) -> dict[str, Any]:
    zoo = _zoo()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return zoo.get(BenchmarkDataset(spec.dataset), {}).get(ThreatModel(spec.threat), {})


def _zoo_entry(spec: RobustBenchSpec) -> dict[str, Any]:
    """The zoo's entry for ``spec``; an unknown name lists close matches (or where it does exist)."""
    entries = _entries(spec)
    if spec.name in entries:
        return entries[spec.name]
    if not entries:
        raise ConfigError(
            f"RobustBench has no {spec.dataset}/{spec.threat} models (this robustbench version)"
        )
    elsewhere = [
        f"{dataset}/{threat}"
        for dataset in DATASETS
        for threat in THREATS
        if (dataset, threat) != (spec.dataset, spec.threat)
        and spec.name in _entries(RobustBenchSpec(dataset, threat, spec.name))
    ]
    if elsewhere:
        hint = f"; it exists in {', '.join(elsewhere)} (pass --rb-dataset/--rb-threat)"
    else:
        close = difflib.get_close_matches(spec.name, list(entries), n=5, cutoff=0.5)
        hint = (
            f" (close matches: {', '.join(close)})"
            if close
            else f" ({len(entries)} models there, e.g. {', '.join(list(entries)[:3])})"
        )
    raise ConfigError(
        f"unknown RobustBench model {spec.name!r} for {spec.dataset}/{spec.threat}{hint}"
    )


def _construct(spec: RobustBenchSpec, entry: dict[str, Any]) -> nn.Module:
    """The architecture, randomly initialised (a few zoo constructors fetch weights themselves)."""
    try:
        return entry["model"]()
    except Exception as exc:  # noqa: BLE001 - zoo constructors raise anything, downloads included
        raise ConfigError(
            f"cannot build {spec} ({type(exc).__name__}: {str(exc)[:200]}); its constructor may download weights, which needs the network"
        ) from exc


def _load_zoo(spec: RobustBenchSpec, model_dir: Path) -> nn.Module:
    """RobustBench's own ``load_model``: its per-model checkpoint fixes included, weights-only torch.load."""
    from robustbench.utils import load_model

    try:
        return load_model(
            spec.name, model_dir=str(model_dir), dataset=spec.dataset, threat_model=spec.threat
        )
    except Exception as exc:  # noqa: BLE001 - downloads, unpickling and key mismatches all land here
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"cannot load {spec} from {model_dir} ({type(exc).__name__}: {first})"
        ) from exc


@contextlib.contextmanager
def _model_dir_holding(spec: RobustBenchSpec, checkpoint: Path) -> Iterator[Path]:
    """A temporary RobustBench ``model_dir`` whose only checkpoint is ``checkpoint`` (a link, no copy)."""
    with tempfile.TemporaryDirectory(prefix="fracdet-rb-") as tmp:
        target = spec.checkpoint_in(Path(tmp))
        target.parent.mkdir(parents=True)
        target.symlink_to(Path(checkpoint).resolve())
        yield Path(tmp)


def _load_weights(
    spec: RobustBenchSpec, entry: dict[str, Any], *, pretrained: bool, weights: Path | None
) -> tuple[nn.Module, str]:
    """The zoo model with the weights asked for, and a phrase saying where they came from."""
    if weights is None and not pretrained:
        return _construct(spec, entry), "random initialisation"
    ensemble = isinstance(entry.get("gdrive_id"), list)
    if weights is not None and Path(weights).is_file():
        weights = Path(weights)
        if weights.suffix == ".safetensors":
            model = _construct(spec, entry)
            state = load_state_dict_file(weights)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                first = next(
                    (line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc)
                )
                raise ConfigError(f"weights do not fit {spec} ({first[:200]})", weights) from exc
            return model, f"{weights}"
        if ensemble:
            raise ConfigError(
                f"{spec} is an ensemble of {len(entry['gdrive_id'])} checkpoints: pass its RobustBench model_dir with --weights DIR",
                weights,
            )
        with _model_dir_holding(spec, weights) as model_dir:
            return _load_zoo(spec, model_dir), f"{weights}"
    model_dir = Path(weights) if weights is not None else DEFAULT_MODEL_DIR
    if weights is not None and not model_dir.is_dir():
        raise ConfigError(
            "weights not found (a RobustBench checkpoint file or model_dir)", model_dir
        )
    checkpoint = spec.checkpoint_in(model_dir)
    present = Path(f"{checkpoint}_m0.pt").is_file() if ensemble else checkpoint.is_file()
    if not present and not hub_reachable("drive.google.com"):
        raise ConfigError(
            f"cannot download {spec}: the RobustBench zoo is unreachable (offline?) and {checkpoint} does not exist. "
            "Put the checkpoint there (or pass it with --weights FILE, or its model_dir with --weights DIR), or train from random initialisation without --pretrained"
        )
    return _load_zoo(spec, model_dir), f"RobustBench zoo ({checkpoint})"


def _normalization(model: nn.Module) -> dict[str, Any]:
    """The mean/std a zoo model applies to its [0, 1] input itself, if any (buffers or plain tensors)."""
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


# --- the probe: where the features are -------------------------------------------------------


class _Features(Exception):  # noqa: N818 - a signal carrying a tensor, not an error
    """Raised inside the zoo model's forward to hand its features to the wrapper and skip the rest."""

    def __init__(self, tensor: torch.Tensor) -> None:
        super().__init__("features")
        self.tensor = tensor


class _StopAfter(nn.Module):
    """Runs the feature layer (``inner``, hooks and all) and hands its output over."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise _Features(self.inner(*args, **kwargs))


class _StopBefore(nn.Module):
    """Stands where the zoo head was and hands over its input."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raise _Features(features)


@dataclass
class _Probe:
    head: str  # the zoo head's module name
    head_in: int
    feature: str | None  # the last feature map's module (None: read the head's input)
    channels: int
    reduction: int


def _set_module(root: nn.Module, target: nn.Module, replacement: nn.Module) -> None:
    """Put ``replacement`` wherever ``target`` is registered under ``root``."""
    for name, module in list(root.named_modules(remove_duplicate=False)):
        if module is target and name:
            parent, _, child = name.rpartition(".")
            setattr(root.get_submodule(parent), child, replacement)


def _is_inside(name: str, ancestor: str) -> bool:
    return ancestor == "" or name.startswith(ancestor + ".")


def _probe(spec: RobustBenchSpec, model: nn.Module) -> _Probe:
    """Find the zoo head (the last linear layer, producing the output) and the feature map before it.

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
            f"{spec}: its last linear layer {head!r} runs more than once per image: fracdet cannot put a new head on it"
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
            f"{spec}: its output is not its last linear layer's ({head!r}): fracdet cannot put a new head on it"
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
                f"{spec}: its head reads a {head_in.ndim}-D input: fracdet cannot put a new head on it"
            )
        logger.info("%s: the new head reads the zoo head's input; inputs must be %d px", spec, size)
        return _Probe(head, int(head_in.shape[1]), None, int(head_in.shape[1]), 1)
    channels, height = int(caught["feature"].shape[1]), int(caught["feature"].shape[2])
    return _Probe(head, int(head_in.shape[1]), feature, channels, max(size // max(height, 1), 1))


# --- the backbone ----------------------------------------------------------------------------


class RobustBenchBackbone(nn.Module):
    """A RobustBench model's features under a new linear head, shaped like a timm model for fracdet.

    ``num_classes``, ``get_classifier()``, ``pretrained_cfg`` and ``feature_info`` (the feature
    map, for Grad-CAM) are what :mod:`fracdet.cls.model` and :mod:`fracdet.explain` ask of a
    backbone; :meth:`stages` lists the trunk's top-level stages for partial fine-tuning.
    """

    def __init__(
        self,
        trunk: nn.Module,
        probe: _Probe,
        *,
        spec: str,
        num_classes: int,
        drop_rate: float,
        global_pool: str | None,
        info: dict[str, Any],
    ) -> None:
        super().__init__()
        modules = dict(trunk.named_modules())
        head = modules[probe.head]
        if probe.feature is not None:
            _set_module(trunk, modules[probe.feature], _StopAfter(modules[probe.feature]))
            _set_module(trunk, head, nn.Identity())
        else:
            _set_module(trunk, head, _StopBefore())
        self.trunk = trunk
        self.pool = (global_pool or "avg") if probe.feature is not None else None
        self.drop = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        self.head = nn.Linear(probe.channels, num_classes)
        self.num_classes = num_classes
        self.backbone_info = info
        self.pretrained_cfg = {
            "architecture": spec,
            "classifier": "head",
            "mean": (0.0, 0.0, 0.0),
            "std": (1.0, 1.0, 1.0),
        }
        self.default_cfg = self.pretrained_cfg
        self.feature_info = (
            [
                {
                    "module": f"trunk.{probe.feature}.inner",
                    "num_chs": probe.channels,
                    "reduction": probe.reduction,
                }
            ]
            if probe.feature is not None
            else []
        )

    def get_classifier(self) -> nn.Module:
        return self.head

    def stages(self) -> list[nn.Module]:
        """The trunk's top-level children that hold parameters, in registration order."""
        return [
            module
            for _, module in self.trunk.named_children()
            if any(True for _ in module.parameters())
        ]

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` features: the trunk run up to its feature map, globally pooled (or the old head's input)."""
        try:
            self.trunk(pixels)
        except _Features as caught:
            features = caught.tensor
        else:  # the probe checked that the capture point runs on every forward
            raise RuntimeError("the RobustBench trunk finished without reaching its feature layer")
        if features.ndim == 4:
            if self.pool == "max":
                return features.amax(dim=(2, 3))
            if self.pool == "avgmax":
                return 0.5 * (features.mean(dim=(2, 3)) + features.amax(dim=(2, 3)))
            return features.mean(dim=(2, 3))
        return features

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.forward_features(pixels)))


def create_robustbench_backbone(
    backbone: str,
    *,
    num_outputs: int,
    pretrained: bool = False,
    weights: Path | None = None,
    drop_rate: float = 0.0,
    global_pool: str | None = None,
) -> RobustBenchBackbone:
    """The RobustBench model ``backbone`` (``robustbench:DATASET/THREAT/NAME``) with a ``num_outputs`` head.

    See the module docstring for where weights come from. ``global_pool`` (``avg``, the
    zoo's own, ``max`` or ``avgmax``) pools the feature map for the new head.
    """
    spec = parse_spec(backbone)
    if global_pool is not None and global_pool not in _POOLS:
        raise ConfigError(
            f"global_pool {global_pool!r} is not available for RobustBench backbones; choose one of {', '.join(_POOLS)}"
        )
    entry = _zoo_entry(spec)
    model, source = _load_weights(spec, entry, pretrained=pretrained, weights=weights)
    probe = _probe(spec, model)
    if probe.feature is None and global_pool is not None:
        raise ConfigError(
            f"{spec} pools its features itself (its head reads a vector): drop global_pool"
        )
    info = {
        "source": "robustbench",
        "model": spec.name,
        "dataset": spec.dataset,
        "threat": spec.threat,
        "weights": source,
        "normalization": _normalization(model),
        "features": f"global {global_pool or 'avg'} pool of {probe.feature}"
        if probe.feature
        else f"input of the zoo head {probe.head}",
        "native_size": NATIVE_SIZE[spec.dataset],
    }
    logger.info(
        "%s: weights from %s; normalisation %s", spec, source, info["normalization"]["where"]
    )
    return RobustBenchBackbone(
        model,
        probe,
        spec=str(spec),
        num_classes=num_outputs,
        drop_rate=drop_rate,
        global_pool=global_pool,
        info=info,
    )
