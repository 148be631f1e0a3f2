"""The audit's work on one batch of one classifier: attack, attributions, detector, metrics.

Per batch, in this order: the clean decision and attributions (one
:func:`~fracdet.explain.batch.explain_batch`: accuracy, the attack's labels, every map), the
attack, the same on the PGD inputs, the detector on both, then the localization metrics
against ground-truth and detector boxes. Everything happens in the classifier's input frame
(the letterboxed, or stretched, square): ground-truth boxes are mapped into it with the data
layer's geometry, and the detector looks at exactly the pixels the classifier saw, so clean
and attacked inputs differ by the perturbation alone.

An audit is compute-bound; :mod:`fracdet.explain.batch` shares passes where the maths
allows (the decision's forward also serves Saliency and Grad-CAM; DeepLIFT runs its baseline
once per batch) and names the stages it times (``forward+SM+GC``, ``attr:DL``...). The attack
and every attribution run under the classifier's precision (autocast), as the forwards do.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fracdet.audit.config import CONDITIONS, AuditConfig
from fracdet.audit.inputs import AuditItem
from fracdet.audit.schema import DELTA_METHODS, AuditSchema, ImageRow, MaskScores
from fracdet.data.formats import Box
from fracdet.data.geometry import box_iou, box_to_model_frame, boxes_mask
from fracdet.explain.batch import explain_batch
from fracdet.explain.localization import (
    RankedMap,
    localization_scores,
    near_mask,
    rank_correlation,
    topk_intersection,
)
from fracdet.runtime import autocast

__all__ = [
    "ClassifierUnderAudit",
    "BatchOutcome",
    "audit_batch",
    "column_names",
    "detect_in_frame",
]

logger = logging.getLogger(__name__)

#: Boxes are kept down to this score for COCO mAP (as eval-det); ``det_conf`` filters them for
#: localization and agreement.
MAP_CONF = 0.001


def column_names(cfg: AuditConfig, codes: Sequence[str]) -> list[str]:
    """The per-image table's header for ``codes`` (see :mod:`fracdet.audit.schema`)."""
    return AuditSchema.of(codes, cfg.percentiles).columns()


@dataclass
class ClassifierUnderAudit:
    """A loaded classifier with what the audit needs to run it."""

    name: str
    model: torch.nn.Module
    meta: Any  # fracdet.cls.checkpoint.ClassifierMeta
    explainers: dict[str, Any]  # code -> Explainer
    attack: Any  # fracdet.robust.attacks.AttackConfig, in pixel space
    device: torch.device
    precision: str


@dataclass
class BatchOutcome:
    """Rows for the per-image table, maps to save, detections to journal, and stage timings."""

    rows: list[dict[str, Any]]
    maps: dict[str, np.ndarray]
    detections: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class _Timer:
    def __init__(self, seconds: dict[str, float], stage: str, device: torch.device) -> None:
        self.seconds, self.stage, self.device = seconds, stage, device

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[self.stage] += time.perf_counter() - self.start


def _fracture_probability(logits: torch.Tensor, temperature: float) -> np.ndarray:
    return torch.sigmoid(logits.float() / temperature).cpu().numpy().astype(np.float64)


def detect_in_frame(
    detector: Any, images: torch.Tensor, cfg: AuditConfig, device: torch.device
) -> list[tuple[list[Box], list[float]]]:
    """Boxes (model frame) and scores for each ``(1, S, S)`` image in [0, 1]."""
    from fracdet.det.inference import DetectOptions, detect
    from fracdet.runtime import ultralytics_device

    arrays = [img[0].detach().float().clamp(0, 1).cpu().numpy() for img in images]
    options = DetectOptions(
        imgsz=cfg.det_imgsz, conf=MAP_CONF, iou=cfg.det_iou, device=ultralytics_device(device)
    )
    return [
        (list(d.boxes), list(d.scores))
        for d in detect(detector, arrays, options, batch=len(arrays))
    ]


def _confident(found: tuple[list[Box], list[float]], conf: float) -> list[Box]:
    return [box for box, score in zip(*found, strict=True) if score >= conf]


def audit_batch(
    clf: ClassifierUnderAudit,
    images: torch.Tensor,
    items: Sequence[AuditItem],
    cfg: AuditConfig,
    *,
    detector: Any = None,
    generator: torch.Generator | None = None,
) -> BatchOutcome:
    """Audit ``images`` ``(B, 1, S, S)``, the classifier's inputs for ``items``."""
    from fracdet.robust.attacks import attack

    out = BatchOutcome([], {}, [])
    device, meta = clf.device, clf.meta
    size = images.shape[-1]
    images = images.to(device)
    timer = lambda stage: _Timer(out.seconds, stage, device)  # noqa: E731 - a tiny local factory
    has_labels = all(item.label is not None for item in items)

    def choose_targets(logits: torch.Tensor) -> list[int]:
        if cfg.target == "fracture":
            return [1] * len(logits)
        return (
            (_fracture_probability(logits, meta.temperature) >= meta.threshold)
            .astype(np.int64)
            .tolist()
        )

    with autocast(device, clf.precision):
        clean = explain_batch(clf.explainers, clf.model, images, choose_targets, stage=timer)
    p_clean = _fracture_probability(clean.logits, meta.temperature)
    pred_clean = (p_clean >= meta.threshold).astype(np.int64)
    # without labels the attack pushes away from the model's own answer (prediction stability)
    labels = np.array([item.label for item in items], dtype=np.int64) if has_labels else pred_clean
    with timer("attack"), autocast(device, clf.precision):
        adv = attack(
            clf.model,
            images,
            torch.as_tensor(labels, device=device),
            clf.attack,
            generator=generator,
            timings=out.seconds,  # autoattack: each attack's seconds, as attack:{name}
        )
    with autocast(device, clf.precision):
        attacked = explain_batch(clf.explainers, clf.model, adv, choose_targets, stage=timer)
    p_adv = _fracture_probability(attacked.logits, meta.temperature)
    pred_adv = (p_adv >= meta.threshold).astype(np.int64)
    linf = (adv - images).abs().flatten(1).amax(dim=1).cpu().numpy()

    inputs = {"clean": images, "pgd": adv}
    explained = {"clean": clean, "pgd": attacked}
    maps: dict[tuple[str, str], np.ndarray] = {
        (code, cond): np.nan_to_num(explained[cond].maps[code])
        for code in clf.explainers
        for cond in CONDITIONS
    }
    deltas: dict[str, np.ndarray] = {
        cond: np.asarray(explained[cond].extras["IG"]["delta"], dtype=np.float64)
        for cond in CONDITIONS
        if "delta" in explained[cond].extras.get("IG", {})
    }

    found: dict[str, list[tuple[list[Box], list[float]]]] = {}
    if detector is not None:
        with timer("detector"):
            found = {
                cond: detect_in_frame(detector, inputs[cond], cfg, device) for cond in CONDITIONS
            }

    with timer("metrics"):
        schema = AuditSchema.of(list(clf.explainers), cfg.percentiles)
        for k, item in enumerate(items):
            gt = (
                [
                    box_to_model_frame(
                        b, item.height, item.width, size, keep_aspect=meta.keep_aspect
                    )
                    for b in item.boxes
                ]
                if item.width
                else []
            )
            row = ImageRow(
                model=clf.name,
                index=item.index,
                key=item.key,
                path=item.path_text,
                label=None if item.label is None else int(item.label),
                n_gt_boxes=len(gt),
                p={"clean": float(p_clean[k]), "pgd": float(p_adv[k])},
                pred={"clean": int(pred_clean[k]), "pgd": int(pred_adv[k])},
                linf=float(linf[k]),
            )
            gt_mask = boxes_mask(gt, size, size) if gt else None
            if gt_mask is not None and not gt_mask.any():  # boxes all in the padding: no score
                gt_mask = None
            if gt_mask is not None:
                row.box_share = float(gt_mask.mean())
            det_masks: dict[str, np.ndarray | None] = {}
            for cond in CONDITIONS if detector is not None else ():
                boxes, scores = found[cond][k]
                kept = _confident((boxes, scores), cfg.det_conf)
                row.det_n[cond] = len(kept)
                row.det_max[cond] = float(max(scores, default=0.0))
                det_mask = boxes_mask(kept, size, size) if kept else None
                det_masks[cond] = det_mask if det_mask is not None and det_mask.any() else None
                if det_masks[cond] is not None:
                    row.det_box_share[cond] = float(det_masks[cond].mean())
                out.detections.append(
                    {
                        "model": clf.name,
                        "index": item.index,
                        "cond": cond,
                        "size": size,
                        "keep_aspect": meta.keep_aspect,
                        "boxes": [
                            [*(round(v, 2) for v in b.as_list()), b.label, round(s, 5)]
                            for b, s in zip(boxes, scores, strict=True)
                        ],
                    }
                )
            if gt and detector is not None:
                kept_clean = _confident(found["clean"][k], cfg.det_conf)
                row.det_gt_iou = float(
                    np.mean([max((box_iou(g, d) for d in kept_clean), default=0.0) for g in gt])
                )
            # each mask's pointing zone computed once, and each map sorted once, for every metric
            zone = lambda m: near_mask(m, tolerance_px=cfg.pointing_tolerance)  # noqa: E731
            gt_zone = (gt_mask, zone(gt_mask)) if gt_mask is not None else None
            masks = {
                "gt": {cond: gt_zone for cond in CONDITIONS if gt_zone is not None},
                "det": {cond: (m, zone(m)) for cond, m in det_masks.items() if m is not None},
            }
            metrics = {"gt": schema.gt_metrics(), "det": schema.det_metrics()}
            percentiles = {"gt": schema.percentiles, "det": (schema.focus,)}
            for code, col in zip(clf.explainers, schema.methods, strict=True):
                ranked = {cond: RankedMap.of(maps[code, cond][k]) for cond in CONDITIONS}
                for cond, against in itertools.product(CONDITIONS, masks):
                    if cond not in masks[against]:
                        continue
                    mask, near = masks[against][cond]
                    shared = localization_scores(
                        ranked[cond],
                        mask,
                        percentiles=percentiles[against],
                        tolerance_px=cfg.pointing_tolerance,
                        near=near,
                    )
                    if against == "gt":
                        row.pointing_baseline = shared["pointing_baseline"]
                    scored = MaskScores(ranked[cond], mask, near, shared)
                    for metric in metrics[against]:
                        row.scores[schema.column(col, cond, metric)] = metric.score(scored)
                row.scores[schema.rho_column(col)] = rank_correlation(
                    ranked["clean"], ranked["pgd"]
                )
                row.scores[schema.topk_column(col)] = topk_intersection(
                    ranked["clean"], ranked["pgd"], p=schema.focus
                )
                if col in DELTA_METHODS:
                    for cond, delta in deltas.items():
                        row.scores[schema.delta_column(col, cond)] = float(delta[k])
            out.rows.append(row.as_row())
    if cfg.save_maps:
        out.maps = {
            schema.map_name(code, cond): m.astype(np.float16) for (code, cond), m in maps.items()
        }
        out.maps["index"] = np.array([item.index for item in items], dtype=np.int64)
    return out
