"""Loading Ultralytics detectors safely and keeping Ultralytics offline.

Ultralytics ``.pt`` files are Python pickles: loading one can run code. fracdet therefore
loads only a ``.pt`` file the user named on the command line or in a config, through
Ultralytics' restricted loader unless the user opts in with ``--trust-pickle``, downloads
one only when the user names an Ultralytics hub model for training (``train-det --model
yolov8s.pt``, see :func:`hub_weights`) and the network answers, and recognises its own
classifier checkpoints (safetensors + JSON) so that passing one where a detector is expected
gets a clear message instead of an unpickling traceback.

Ultralytics also reaches for the network by itself: a font for its plots, ``yolo26n.pt`` for
its GPU mixed-precision check, a PyPI version check and usage analytics.
:func:`ultralytics_offline` turns those off for the duration of a fracdet call.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fracdet.errors import ConfigError, DataError

if TYPE_CHECKING:  # importing ultralytics costs seconds; only the functions below do it
    from ultralytics import YOLO

__all__ = [
    "CLASSIFIER_SUFFIXES",
    "ONNX_MODEL_FILE",
    "ONNX_NEEDS_PYTORCH",
    "TRUST_PICKLE_HINT",
    "load_detector",
    "check_detector_path",
    "is_classifier_checkpoint",
    "resolve_data_yaml",
    "model_class_names",
    "check_class_names",
    "ultralytics_offline",
    "hub_weights",
    "is_hub_model_name",
]

logger = logging.getLogger(__name__)

#: Files that are fracdet classifier checkpoints (weights and their JSON config).
CLASSIFIER_SUFFIXES = frozenset({".safetensors", ".json"})
#: What every refusal to unpickle says, so a user who trusts the file knows the way out.
TRUST_PICKLE_HINT = (
    "if you trust whoever made this file, pass --trust-pickle (config: trust_pickle: true)"
)
# How torch's weights_only unpickler and Ultralytics' allow-list word a refused object.
_REFUSALS = (
    "Unsupported global",
    "Unsupported class",
    "unrecognized function",
    "Can only",
    "blocked during restricted",
)
#: The file name of an exported model inside its export folder (``fracdet export``).
ONNX_MODEL_FILE = "model.onnx"
#: What a command that needs the PyTorch detector (audit's attack, training, eval-det's
#: Ultralytics val) says to an ONNX one.
ONNX_NEEDS_PYTORCH = (
    "this command needs the PyTorch detector; use its .pt checkpoint "
    "(ONNX detectors run in `fracdet predict`)"
)
_CLASSIFIER_HINT = (
    "this is a fracdet classifier checkpoint, pass it with --cls (a detector is a YOLO .pt file)"
)


def is_classifier_checkpoint(path: str | Path) -> bool:
    """True for a fracdet classifier checkpoint: a .safetensors/.json file or a run folder holding
    one.
    """
    path = Path(path)
    if path.is_dir():
        return any(path.glob("*.safetensors"))
    return path.suffix.lower() in CLASSIFIER_SUFFIXES


def check_detector_path(path: str | Path, *, allow_onnx: bool = False) -> Path:
    """``path`` if it can be a local Ultralytics detector checkpoint, else a :class:`ConfigError`.

    Checked before anything is unpickled, so a wrong file never reaches ``torch.load``. With
    ``allow_onnx``, an ONNX detector from ``fracdet export`` (its ``.onnx`` file or export
    folder) is accepted too and the ``.onnx`` file returned.
    """
    path = Path(path)
    onnx_file = _onnx_file(path)
    if onnx_file is not None:
        if not allow_onnx:
            raise ConfigError(f"an ONNX model: {ONNX_NEEDS_PYTORCH}", path)
        if not onnx_file.is_file():
            raise ConfigError("ONNX detector not found", onnx_file)
        return onnx_file
    if is_classifier_checkpoint(path):
        raise ConfigError(_CLASSIFIER_HINT, path)
    if path.is_dir():
        best = path / "weights" / "best.pt"
        hint = f"; did you mean {best}?" if best.is_file() else ""
        raise ConfigError(f"is a folder, expected a YOLO .pt weights file{hint}", path)
    if not path.exists():
        raise ConfigError(
            "detector weights not found (fracdet never downloads weights: pass the path of a "
            "local YOLO .pt file, "
            "e.g. runs/det/train/weights/best.pt from `fracdet train-det`)",
            path,
        )
    if path.suffix.lower() != ".pt":
        raise ConfigError(
            f"expected a YOLO .pt weights file, got a {path.suffix or 'suffix-less'} file", path
        )
    return path


def _onnx_file(path: Path) -> Path | None:
    """The ``.onnx`` file ``path`` names (itself, or an export folder's ``model.onnx``)."""
    if path.suffix.lower() == ".onnx":
        return path
    if path.is_dir() and (path / ONNX_MODEL_FILE).is_file():
        return path / ONNX_MODEL_FILE
    return None


def is_hub_model_name(spec: str) -> bool:
    """True for a bare Ultralytics release asset name such as ``yolov8s.pt`` (no folder part)."""
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    return Path(spec).name == spec and spec in GITHUB_ASSETS_NAMES


def _network_reachable() -> bool:
    """Ultralytics' own check (DNS of two public resolvers; ``YOLO_OFFLINE=1`` says no at once)."""
    from ultralytics.utils import is_online

    return is_online()


def hub_weights(name: str) -> Path:
    """The local file of the Ultralytics hub model ``name`` (e.g. ``yolov8s.pt``) the user named.

    Users who name a hub model expect Ultralytics to fetch it, as ``train-cls --pretrained``
    fetches timm weights: a copy already in Ultralytics' weights folder is used as is;
    otherwise, when the network answers, Ultralytics downloads it there; offline this is a
    one-line :class:`ConfigError`. Only training calls this: evaluating, predicting and
    auditing read local files only.
    """
    from ultralytics.utils import WEIGHTS_DIR
    from ultralytics.utils.downloads import attempt_download_asset

    cached = Path(WEIGHTS_DIR) / name
    if cached.is_file():
        logger.info("Using %s (Ultralytics' weights folder)", cached)
        return cached
    if not _network_reachable():
        raise ConfigError(
            "an Ultralytics hub model, but the network is unreachable (offline, or "
            "YOLO_OFFLINE=1): download it once "
            f"where you are online and pass its path, put it in {WEIGHTS_DIR}, or train from "
            f"scratch with {Path(name).stem}.yaml",
            name,
        )
    logger.info(
        "Downloading %s from Ultralytics' release assets into %s (you named a hub model)",
        name,
        WEIGHTS_DIR,
    )
    try:
        fetched = Path(attempt_download_asset(cached))
    except Exception as exc:  # requests/urllib raise many types; all mean "the download failed"
        raise ConfigError(
            f"download from Ultralytics' release assets failed ({_reason(exc)})", name
        ) from exc
    if not fetched.is_file():
        raise ConfigError(
            "download from Ultralytics' release assets failed (no file arrived)", name
        )
    return fetched


def load_detector(
    path: str | Path, *, trust_pickle: bool = False, allow_onnx: bool = False
) -> YOLO:
    """An Ultralytics ``YOLO`` detector from a local ``.pt`` file the user named.

    ``.pt`` files are pickles: unpickling one can execute code. By default the file goes
    through Ultralytics' restricted loader (``torch.load(weights_only=True)`` over an
    allow-list of its own layer classes), which loads any checkpoint Ultralytics or fracdet
    trained and refuses anything else before it runs. ``trust_pickle=True`` unpickles in
    full, for a third-party ``.pt`` the user trusts (CLI ``--trust-pickle``). Nothing is
    ever downloaded. A classifier checkpoint, a missing or refused file or one Ultralytics
    cannot load is a :class:`ConfigError`; a model that does not detect boxes too.

    With ``allow_onnx``, an ONNX detector from ``fracdet export`` loads through Ultralytics'
    own ONNX Runtime backend (no pickle involved), which keeps its boxes' convention.
    """
    path = check_detector_path(path, allow_onnx=allow_onnx)
    if path.suffix.lower() == ".onnx":
        return _load_onnx_detector(path)
    with ultralytics_offline():
        from ultralytics import YOLO

        if not trust_pickle:
            _check_restricted_loading(path)
        try:
            with _restricted_loading(not trust_pickle):
                model = YOLO(str(path))
        except (
            Exception
        ) as exc:  # torch/pickle raise many types for a bad file; all mean "cannot load"
            if not trust_pickle and _refused_by_restricted_loader(exc):
                raise ConfigError(
                    "refused: this .pt holds Python objects outside Ultralytics' model "
                    "classes, and unpickling them "
                    f"could run code; {TRUST_PICKLE_HINT}",
                    path,
                ) from exc
            raise ConfigError(
                f"cannot load as an Ultralytics YOLO checkpoint ({_reason(exc)})", path
            ) from exc
    if getattr(model, "task", None) != "detect":
        raise ConfigError(
            f"is an Ultralytics {model.task!r} model, not a detector (task 'detect')", path
        )
    return model


def _load_onnx_detector(path: Path) -> YOLO:
    """An exported detector run by onnxruntime through Ultralytics; a damaged file is one line.

    Ultralytics reads the task, class names and image size from the file's metadata; a file
    without them (not an Ultralytics export, e.g. a fracdet classifier) is refused first.
    """
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends for damaged bytes
        raise ConfigError(
            f"not a readable ONNX model ({type(exc).__name__}: {str(exc)[:120]})", path
        ) from exc
    metadata = {p.key: p.value for p in proto.metadata_props}
    if "fracdet_classifier" in metadata:
        raise ConfigError("this is a fracdet classifier exported to ONNX, pass it with --cls", path)
    if metadata.get("task") != "detect":
        found = metadata.get("task")
        what = f"an Ultralytics {found!r} model" if found else "no Ultralytics metadata"
        raise ConfigError(
            f"not an Ultralytics detector export ({what}); export one with `fracdet export "
            "best.pt`",
            path,
        )
    with ultralytics_offline():
        from ultralytics import YOLO

        try:
            return YOLO(str(path), task="detect")
        except Exception as exc:  # onnxruntime and Ultralytics raise many types
            raise ConfigError(f"cannot load this ONNX detector ({_reason(exc)})", path) from exc


def _check_restricted_loading(path: Path) -> None:
    """Restricted loading needs torch >= 2.6 and an Ultralytics that has it; without them
    Ultralytics would silently unpickle.
    """
    import ultralytics.nn.tasks as tasks

    safe_load = getattr(tasks, "_SafeLoad", None)
    if not hasattr(tasks, "SAFE_LOAD") or not getattr(safe_load, "SUPPORTED", False):
        import torch
        import ultralytics

        raise ConfigError(
            f"cannot load this .pt safely with torch {torch.__version__} and ultralytics "
            f"{ultralytics.__version__} "
            "(restricted loading needs torch >= 2.6 and an Ultralytics release that has it); "
            f"upgrade them, or {TRUST_PICKLE_HINT}",
            path,
        )


def _refused_by_restricted_loader(exc: BaseException) -> bool:
    """True when, somewhere in the exception's chain, the restricted unpickler refused an object.

    Garbage bytes raise ``UnpicklingError`` too ("Unsupported operand"); those are a damaged
    file, not a refusal, and --trust-pickle would not help.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, pickle.UnpicklingError) and any(
            marker in str(seen) for marker in _REFUSALS
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    """The first line of an Ultralytics error, without its "ERROR ❌️" decoration."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    line = (
        line.replace("ERROR", "", 1).replace("❌️", "").replace("❌", "").strip(" :")
        if line.startswith("ERROR")
        else line
    )
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


@contextlib.contextmanager
def _restricted_loading(enabled: bool) -> Iterator[None]:
    """Ultralytics reads its ``ULTRALYTICS_SAFE_LOAD`` flag at import; flip it for one load."""
    if not enabled:
        yield
        return
    import ultralytics.nn.tasks as tasks

    previous = tasks.SAFE_LOAD
    tasks.SAFE_LOAD = True
    try:
        yield
    finally:
        tasks.SAFE_LOAD = previous


# --- class names ---------------------------------------------------------------------------


def resolve_data_yaml(data: str | Path) -> Path:
    """The ``data.yaml`` of a converted dataset, given it or its folder; missing ->
    :class:`DataError`.
    """
    data = Path(data)
    path = data / "data.yaml" if data.is_dir() else data
    if not path.is_file():
        raise DataError(
            "data.yaml not found (run `fracdet convert SRC OUT` first and pass OUT or "
            "OUT/data.yaml)",
            path,
        )
    return path


def model_class_names(model: Any) -> tuple[str, ...]:
    """Class names of an Ultralytics model (``model.names`` is an id -> name dict)."""
    names = model.names
    if isinstance(names, Mapping):
        return tuple(str(names[i]) for i in sorted(names))
    return tuple(str(n) for n in names)


def check_class_names(
    model_names: Sequence[str], data_names: Sequence[str], *, weights: Path, data: Path
) -> None:
    """A model must be scored against the classes it was trained on; a mismatch is a
    :class:`DataError`.
    """
    if tuple(model_names) != tuple(data_names):
        raise DataError(
            f"class names differ: the detector {weights} has {list(model_names)} but the "
            f"dataset has {list(data_names)}",
            data,
        )


# --- offline guard -------------------------------------------------------------------------


def _local_font(font: str = "Arial.ttf") -> Path | None:
    """Ultralytics' ``check_font`` without the download: its cache, a system font, else matplotlib's
    DejaVu.
    """
    from matplotlib import font_manager
    from ultralytics.utils import USER_CONFIG_DIR

    cached = USER_CONFIG_DIR / Path(font).name
    if cached.exists():
        return cached
    for entry in font_manager.fontManager.ttflist:
        if font in entry.fname and Path(entry.fname).exists():
            return Path(entry.fname)
    try:
        return Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    except Exception:  # no usable font at all: Ultralytics falls back to PIL's default
        return None


def _amp_check_without_download(original: Any) -> Any:
    """Ultralytics' AMP check needs ``yolo26n.pt``; without it locally, do what it does offline (AMP
    on).
    """

    def check_amp(model: Any) -> bool:
        from ultralytics.utils import WEIGHTS_DIR

        device = next(model.parameters()).device
        if device.type in {"cpu", "mps"}:
            return False
        if (WEIGHTS_DIR / "yolo26n.pt").is_file():
            return original(model)
        logger.info(
            "AMP check skipped (it needs yolo26n.pt, which fracdet does not download); AMP stays on"
        )
        return True

    return check_amp


@contextlib.contextmanager
def ultralytics_offline() -> Iterator[None]:
    """Within the block, Ultralytics downloads no fonts or AMP-check weights and sends nothing.

    Only module attributes are swapped, and they are restored afterwards. Multi-GPU (DDP)
    training runs in child processes that Ultralytics starts itself, outside this guard; set
    ``YOLO_OFFLINE=1`` there to keep them offline too.
    """
    import ultralytics.data.utils as data_utils
    import ultralytics.engine.trainer as trainer
    import ultralytics.utils.checks as checks
    import ultralytics.utils.events as events
    import ultralytics.utils.plotting as plotting

    saved: list[tuple[Any, str, Any]] = []

    def swap(owner: Any, name: str, value: Any) -> None:
        if hasattr(owner, name):
            saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)

    for module in (checks, data_utils, plotting):
        swap(module, "check_font", _local_font)
    swap(trainer, "check_amp", _amp_check_without_download(checks.check_amp))
    swap(checks, "check_pip_update_available", lambda: False)
    swap(events.events, "enabled", False)
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
