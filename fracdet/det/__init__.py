"""The localization track: train, evaluate and load Ultralytics YOLO fracture detectors.

Importing this package is cheap; Ultralytics, torch and pycocotools are imported by the
functions that need them. Ultralytics ``.pt`` weights are pickles: fracdet loads only the
files the user names and never downloads any.

Two entry points serve other tools (the audit among them): :func:`detect` runs a detector
over files or arrays and returns :class:`~fracdet.data.formats.Box` lists in each image's
original frame, and :func:`coco_map` scores COCO results against :func:`to_coco_gt`.
"""

from __future__ import annotations

from fracdet.det.coco_eval import (
    coco_map,
    image_level_metrics,
    image_level_scores,
    predictions_to_coco_results,
    to_coco_gt,
    to_coco_results,
)
from fracdet.det.evaluate import DetEvalConfig, DetEvalSummary, evaluate_detector
from fracdet.det.inference import Detection, DetectOptions, detect, result_boxes
from fracdet.det.model import (
    check_detector_path,
    is_classifier_checkpoint,
    load_detector,
    ultralytics_offline,
)
from fracdet.det.train import DetTrainConfig, DetTrainResult, parse_extra, train_detector

__all__ = [
    "DetTrainConfig",
    "DetTrainResult",
    "train_detector",
    "parse_extra",
    "DetEvalConfig",
    "DetEvalSummary",
    "evaluate_detector",
    "DetectOptions",
    "Detection",
    "detect",
    "result_boxes",
    "coco_map",
    "to_coco_gt",
    "to_coco_results",
    "predictions_to_coco_results",
    "image_level_scores",
    "image_level_metrics",
    "load_detector",
    "check_detector_path",
    "is_classifier_checkpoint",
    "ultralytics_offline",
]
