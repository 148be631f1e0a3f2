"""The RobustBench zoo: importing it beside current tools, finding an entry, loading weights.

Weights come from the zoo (``--pretrained``: RobustBench's ``model_dir``, ``./models`` by
default, downloaded into it when online), from a local checkpoint (``--weights FILE``, a
``.pt`` as the zoo ships it or a ``.safetensors`` state dict; ``--weights DIR``, a RobustBench
``model_dir``), or nowhere (random initialisation, for tests and smoke runs).
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
from pathlib import Path
from typing import Any

from torch import nn

from fracdet.cls.robustbench.spec import DATASETS, THREATS, RobustBenchSpec
from fracdet.cls.state_files import hub_reachable, load_state_dict_file
from fracdet.errors import ConfigError

__all__ = ["DEFAULT_MODEL_DIR", "zoo_entry", "load_weights"]

logger = logging.getLogger(__name__)

#: RobustBench's own default ``model_dir`` (``load_model(model_dir="./models")``).
DEFAULT_MODEL_DIR = Path("models")
_INSTALL_HINT = (
    "pip install 'fracdet[robustbench]' && "
    "pip install --no-deps robustbench==1.1.1 (see the README)"
)


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
    """RobustBench's model dictionaries, or a clear error when the package or the zoo's needs are
    missing.
    """
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


def zoo_entry(spec: RobustBenchSpec) -> dict[str, Any]:
    """The zoo's entry for ``spec``; an unknown name lists close matches (or where it exists)."""
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
            f"cannot build {spec} ({type(exc).__name__}: {str(exc)[:200]}); its constructor "
            "may download weights, which needs the network"
        ) from exc


def _load_zoo(spec: RobustBenchSpec, model_dir: Path) -> nn.Module:
    """RobustBench's own ``load_model``: its per-model checkpoint fixes included, weights-only
    torch.load.
    """
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
    """A temporary RobustBench ``model_dir`` whose only checkpoint is ``checkpoint`` (a link, no
    copy).
    """
    with tempfile.TemporaryDirectory(prefix="fracdet-rb-") as tmp:
        target = spec.checkpoint_in(Path(tmp))
        target.parent.mkdir(parents=True)
        target.symlink_to(Path(checkpoint).resolve())
        yield Path(tmp)


def load_weights(
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
                (
                    f"{spec} is an ensemble of {len(entry['gdrive_id'])} checkpoints: pass its "
                    "RobustBench model_dir with --weights DIR"
                ),
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
            f"cannot download {spec}: the RobustBench zoo is unreachable (offline?) and "
            f"{checkpoint} does not exist. "
            "Put the checkpoint there (or pass it with --weights FILE, or its model_dir with "
            "--weights DIR), or train from random initialisation without --pretrained"
        )
    return _load_zoo(spec, model_dir), f"RobustBench zoo ({checkpoint})"
