"""Predict's batch loop: both models on a decoded batch, overlays drawn, rows, boxes journaled."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from fracdet.data.formats import Box
from fracdet.data.geometry import scale_boxes
from fracdet.jobs import Journal
from fracdet.predict.config import PredictConfig
from fracdet.predict.decode import Batch, Decoded
from fracdet.predict.models import Models
from fracdet.predict.outputs import BASE_COLUMNS, DET_COLUMNS
from fracdet.predict.overlays import draw_overlay, overlay_path, write_png
from fracdet.runtime import autocast, ultralytics_device

__all__ = ["predict_batches", "to_original_frame", "detector_options"]

logger = logging.getLogger(__name__)


def to_original_frame(
    found: tuple[list[Box], list[float]], item: Decoded, det_shape: tuple[int, int]
) -> tuple[list[Box], list[float]]:
    """Boxes from the detector's (shrunk) input back to the original image's pixels, clipped."""
    boxes, scores = found
    return scale_boxes(
        boxes, scores, from_shape=tuple(det_shape[:2]), to_shape=(item.height, item.width)
    )


def detector_options(cfg: PredictConfig, models: Models) -> dict[str, Any]:
    """Keyword arguments of Ultralytics' ``predict`` for this run."""
    options: dict[str, Any] = {
        "imgsz": cfg.det_imgsz,
        "conf": cfg.det_conf,
        "iou": cfg.det_iou,
        "verbose": False,
        "stream": True,
        # rect=False: every image is letterboxed to the same square whatever else is in its
        # batch, so shards and resumed runs give exactly the boxes of one unsharded run.
        "rect": False,
        # an ONNX detector runs on onnxruntime's CPU provider: on a GPU device, Ultralytics
        # would ask for onnxruntime-gpu and try to install it
        "device": "cpu" if models.det_onnx else ultralytics_device(models.device),
    }
    if models.det_onnx:
        return options
    if models.device.type == "cuda" and models.precision in ("fp16", "bf16"):
        options["quantize"] = 16  # Ultralytics' half precision (its `half` is deprecated)
    return options


@dataclass
class _Outcome:
    """What the models said about the readable items of one batch, in their order."""

    probs: np.ndarray | None = None
    classes: np.ndarray | None = None
    cams: np.ndarray | None = None
    detections: list[tuple[list[Box], list[float]]] | None = None


def _run_models(batch: Batch, models: Models, det_options: dict[str, Any]) -> _Outcome:
    from fracdet.cls.calibration import apply_temperature
    from fracdet.det.evaluate import result_boxes

    outcome = _Outcome()
    good = [item for item in batch.items if item.reason is None]
    if models.classifier is not None and batch.cls is not None:
        images = batch.cls.to(models.device, non_blocking=True)
        with torch.no_grad(), autocast(models.device, models.precision):
            logits = models.classifier(images).float().cpu().numpy()
        outcome.probs = apply_temperature(logits, models.meta.temperature)
        outcome.classes = None if models.meta.binary else outcome.probs.argmax(axis=1)
        if models.explainer is not None:
            targets = None if outcome.classes is None else outcome.classes.tolist()
            outcome.cams = models.explainer.attribute(images.float(), targets)
    if models.detector is not None and good:
        results = models.detector.predict([item.det for item in good], **det_options)
        outcome.detections = [
            to_original_frame(result_boxes(r), item, r.orig_shape)
            for item, r in zip(good, results, strict=True)
        ]
    return outcome


def _cls_cells(
    models: Models, outcome: _Outcome, k: int, n_cells: int
) -> tuple[list[str], str | None]:
    """The ``n_cells`` classifier cells of the k-th readable item's row, and the overlay's label."""
    meta = models.meta
    if outcome.probs is None:
        return [""] * n_cells, None
    if meta.binary:
        p = float(outcome.probs[k])
        decision = meta.class_names[int(p >= meta.threshold)]
        return [f"{p:.8f}", decision], f"{decision} p={p:.2f}"
    best = int(outcome.classes[k])
    cells = [f"{float(p):.8f}" for p in outcome.probs[k]] + [meta.class_names[best]]
    return cells, f"{meta.class_names[best]} p={float(outcome.probs[k][best]):.2f}"


def predict_batches(
    loader: DataLoader,
    models: Models,
    cfg: PredictConfig,
    out: Path,
    header: list[str],
    journal: Journal,
) -> Iterator[None]:
    """Predict batch by batch; yields once per image so the progress bar counts images/s."""
    from fracdet.det.evaluate import predictions_to_coco_results
    from fracdet.det.model import ultralytics_offline

    det_options = detector_options(cfg, models)
    n_cls_cells = len(header) - len(BASE_COLUMNS) - len(DET_COLUMNS)
    with ultralytics_offline():
        for batch in loader:
            outcome = _run_models(batch, models, det_options)
            rows: list[list[Any]] = []
            box_lines: list[dict[str, Any]] = []  # the side journal
            k = 0
            for item in batch.items:
                if item.reason is not None:
                    rows.append(
                        [item.image_id, item.path, "skipped", item.reason]
                        + [""] * (len(header) - 4)
                    )
                    continue
                cells, label = _cls_cells(models, outcome, k, n_cls_cells)
                row: list[Any] = [
                    item.image_id,
                    item.path,
                    "ok",
                    "",
                    item.width,
                    item.height,
                    *item.spacing_cells(),
                    *cells,
                ]
                boxes, scores = outcome.detections[k] if outcome.detections else ([], [])
                if models.detector is not None:
                    row += [len(boxes), f"{max(scores, default=0.0):.6f}"]
                    if boxes:
                        box_lines.append(
                            {
                                "image_id": item.image_id,
                                "results": predictions_to_coco_results(
                                    item.image_id, boxes, scores
                                ),
                            }
                        )
                else:
                    row += ["", ""]
                if cfg.with_overlays and item.overlay is not None:
                    cam = outcome.cams[k] if outcome.cams is not None else None
                    write_png(
                        overlay_path(out, item.path),
                        draw_overlay(
                            item.overlay,
                            item,
                            boxes,
                            scores,
                            label,
                            cam,
                            models.cls_size,
                            keep_aspect=models.cls_keep_aspect,
                        ),
                    )
                rows.append(row)
                k += 1
            # Overlays and boxes first, the CSV rows last: a row means the image is done.
            journal.commit([dict(zip(header, row, strict=True)) for row in rows], box_lines)
            for _ in batch.items:
                yield None
