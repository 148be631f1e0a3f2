"""The localization track: train, evaluate and load Ultralytics YOLO fracture detectors.

Importing this package is cheap; Ultralytics, torch and pycocotools are imported by the
functions that need them. Ultralytics ``.pt`` weights are pickles: fracdet loads only the
files the user names and never downloads any.
"""

from __future__ import annotations

from fracdet.det.evaluate import (
    DetEvalConfig,
    coco_map,
    evaluate_detector,
    image_level_metrics,
    image_level_scores,
    predictions_to_coco_results,
    result_boxes,
)
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
    "evaluate_detector",
    "coco_map",
    "predictions_to_coco_results",
    "result_boxes",
    "image_level_scores",
    "image_level_metrics",
    "load_detector",
    "check_detector_path",
    "is_classifier_checkpoint",
    "ultralytics_offline",
]
