"""Loading both tracks for predict, and what identifies a run (folder, checkpoints, options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fracdet.fsutil import sha256_file
from fracdet.predict.config import PredictConfig
from fracdet.runtime import resolve_device, resolve_precision

__all__ = ["Models", "load_models", "run_identity", "IDENTITY_NAMES"]

#: How identity keys are named in messages about shards that do not match.
IDENTITY_NAMES = {
    "folder": "input folder",
    "cls_sha256": "classifier checkpoint",
    "det_sha256": "detector checkpoint",
}


@dataclass
class Models:
    """The loaded models of a run (either may be missing) and the record of their checkpoints."""

    device: torch.device
    precision: str
    classifier: Any = None
    meta: Any = None
    detector: Any = None
    det_onnx: bool = False  # an exported detector: onnxruntime on the CPU
    det_names: tuple[str, ...] = ()
    explainer: Any = None
    checkpoints: dict[str, Any] = field(default_factory=dict)

    @property
    def cls_size(self) -> int | None:
        """The classifier's input size, or ``None`` without a classifier."""
        return self.meta.image_size if self.classifier is not None else None

    @property
    def cls_keep_aspect(self) -> bool:
        """Whether the classifier was trained on letterboxed (``True``) or stretched squares."""
        return self.meta.keep_aspect if self.classifier is not None else True


def load_models(cfg: PredictConfig) -> Models:
    """Both models and what identifies them (paths, sha256), checked before any output is made."""
    device = resolve_device(cfg.device)
    models = Models(device=device, precision=resolve_precision(cfg.precision, device))
    if cfg.cls is not None:
        from fracdet.cls.checkpoint import classifier_files, load_classifier

        # an exported .onnx runs through onnxruntime; Grad-CAM needs the PyTorch model
        models.classifier, models.meta = load_classifier(
            cfg.cls, device=device, gradients=cfg.gradcam
        )
        models.checkpoints["cls"] = {
            "path": str(Path(cfg.cls).resolve()),
            "runtime": _runtime(models.classifier),
            "sha256": {f.name: sha256_file(f) for f in classifier_files(cfg.cls)},
            "backbone": models.meta.backbone,
            "class_names": list(models.meta.class_names),
            "image_size": models.meta.image_size,
            "threshold": models.meta.threshold,
            "temperature": models.meta.temperature,
        }
        if cfg.gradcam:
            from fracdet.explain import GradCAMExplainer

            models.explainer = GradCAMExplainer(
                models.classifier,
                image_size=models.meta.image_size,
                backbone_name=models.meta.backbone,
            )
    if cfg.det is not None:
        from fracdet.det.model import check_detector_path, load_detector, model_class_names

        # the file itself: an export folder's model.onnx, or the .pt
        det = check_detector_path(cfg.det, allow_onnx=True)
        models.detector = load_detector(det, trust_pickle=cfg.trust_pickle, allow_onnx=True)
        models.det_names = model_class_names(models.detector)
        models.det_onnx = det.suffix.lower() == ".onnx"
        models.checkpoints["det"] = {
            "path": str(Path(cfg.det).resolve()),
            "runtime": "onnxruntime" if models.det_onnx else "pytorch",
            "sha256": {det.name: sha256_file(det)},
            "class_names": list(models.det_names),
        }
    return models


def _runtime(classifier: Any) -> str:
    """Which engine runs the classifier: onnxruntime for an exported one, else PyTorch."""
    from fracdet.cls.onnx import OnnxClassifier

    return "onnxruntime" if isinstance(classifier, OnnxClassifier) else "pytorch"


def run_identity(folder: Path, cfg: PredictConfig, models: Models) -> dict[str, Any]:
    """What must not change between a run and its resume, or between shards to be merged."""
    det = (
        {"imgsz": cfg.det_imgsz, "conf": cfg.det_conf, "iou": cfg.det_iou}
        if cfg.det is not None
        else None
    )
    return {
        "folder": str(folder.resolve()),
        "recursive": cfg.recursive,
        "cls_sha256": models.checkpoints.get("cls", {}).get("sha256"),
        "det_sha256": models.checkpoints.get("det", {}).get("sha256"),
        "det_options": det,
    }
