"""``fracdet train-det``'s options: the checked config, and Ultralytics arguments passed as
``extra`` (refused here, before training, when Ultralytics would refuse them later)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fracdet.config import yaml_error_line
from fracdet.errors import ConfigError

__all__ = ["DetTrainConfig", "parse_extra", "OPTIMIZERS"]

OPTIMIZERS = ("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp")
# Ultralytics arguments fracdet sets itself (from the run folder, the config fields or the mode);
# letting ``extra`` set them too would make two sources of truth.
_MANAGED_KEYS = frozenset(
    {"data", "model", "project", "name", "exist_ok", "resume", "mode", "task", "save_dir", "cfg"}
)


@dataclass(frozen=True)
class DetTrainConfig:
    """Everything ``train-det`` needs; the CLI and ``configs/det.yaml`` build one of these.

    ``model`` is a YOLO architecture to train from scratch (``yolov8n.yaml`` .. ``yolov8x.yaml``
    or any Ultralytics model YAML), an Ultralytics hub model name (``yolov8s.pt``: Ultralytics
    fetches it when online, see :func:`~fracdet.det.model.hub_weights`) or a local ``.pt`` file the
    user names (a pickle: loaded
    through Ultralytics' restricted loader unless ``trust_pickle`` says to unpickle it in full).
    Augmentation defaults suit radiographs: no hue/saturation jitter
    (grayscale), mild brightness, small rotations, and no flips because left/right
    (laterality) is clinical information; ``fliplr`` can be raised where that does not matter.
    ``extra`` passes any other Ultralytics training argument (``cos_lr``, ``close_mosaic``,
    ``cache``, ...), checked against Ultralytics' own list.
    """

    data: Path
    model: str = "yolov8n.yaml"
    output: Path = Path("runs/det")
    name: str = "train"
    epochs: int = 100
    imgsz: int = 640
    batch: int = 16
    optimizer: str = "auto"
    lr0: float = 0.01
    patience: int = 50
    device: str | None = None
    workers: int = 2
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    trust_pickle: bool = False
    hsv_h: float = 0.0
    hsv_s: float = 0.0
    hsv_v: float = 0.2
    degrees: float = 5.0
    translate: float = 0.05
    scale: float = 0.2
    fliplr: float = 0.0
    flipud: float = 0.0
    mosaic: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.imgsz >= 32, f"imgsz must be >= 32, got {self.imgsz}"),
            (
                self.batch >= 1 or self.batch == -1,
                f"batch must be >= 1 (or -1 for Ultralytics' auto batch on GPU), got {self.batch}",
            ),
            (self.lr0 > 0, f"lr0 must be > 0, got {self.lr0}"),
            (self.patience >= 0, f"patience must be >= 0, got {self.patience}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (
                self.optimizer in OPTIMIZERS,
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
            ),
            (0.0 <= self.degrees <= 180.0, f"degrees must be in [0, 180], got {self.degrees}"),
            (
                bool(self.name)
                and Path(self.name).name == self.name
                and self.name not in (".", ".."),
                f"name must be a plain folder name, got {self.name!r}",
            ),
        ]
        for key in ("hsv_h", "hsv_s", "hsv_v", "translate", "scale", "fliplr", "flipud", "mosaic"):
            value = getattr(self, key)
            checks.append((0.0 <= value <= 1.0, f"{key} must be in [0, 1], got {value}"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.resume and self.overwrite:
            raise ConfigError(
                "resume and overwrite exclude each other: resume continues a run, overwrite "
                "replaces it"
            )
        _check_extra(self.extra)


def parse_extra(items: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """``["cos_lr=true", "close_mosaic=5"]`` (repeated CLI options) -> ``{"cos_lr": True, ...}``.

    Values are read as YAML scalars, so numbers, booleans and ``null`` get their types.
    """
    extra: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"extra Ultralytics arguments are key=value, got {item!r}")
        try:
            extra[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{key}: cannot read value {value!r} ({yaml_error_line(exc)})"
            ) from exc
    return extra


def _check_extra(extra: Any) -> None:
    """Unknown or fracdet-managed keys, and values Ultralytics would refuse, fail here, before
    training.
    """
    if not extra:
        return
    if not isinstance(extra, dict):
        raise ConfigError(
            f"extra must be a mapping of Ultralytics argument: value, got {type(extra).__name__}"
        )
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    own = {f for f in DetTrainConfig.__dataclass_fields__ if f != "extra"}
    for key in extra:
        if key in own:
            raise ConfigError(
                f"extra.{key}: set {key!r} directly (it is a train-det option), not under extra"
            )
        if key in _MANAGED_KEYS:
            raise ConfigError(
                f"extra.{key}: fracdet sets {key!r} itself (from data, model, output/name and "
                "resume)"
            )
        if key not in DEFAULT_CFG_DICT:
            close = difflib.get_close_matches(
                key, [k for k in DEFAULT_CFG_DICT if k not in _MANAGED_KEYS], n=3
            )
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else " (see https://docs.ultralytics.com/usage/cfg/)"
            )
            raise ConfigError(f"extra.{key}: not an Ultralytics training argument{hint}")
    try:
        check_cfg(dict(extra))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"extra: {exc}") from exc
