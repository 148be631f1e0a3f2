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
    "method_column",
    "focus_percentile",
]

logger = logging.getLogger(__name__)

#: Boxes are kept down to this score for COCO mAP (as eval-det); ``det_conf`` filters them for
#: localization and agreement.
MAP_CONF = 0.001


def method_column(code: str) -> str:
    """A column-safe method code: ``GC++`` -> ``GCpp``."""
    return code.replace("+", "p")


def focus_percentile(percentiles: Sequence[float]) -> float:
    """The percentile used for detector-box coverage, map stability and paired tests (25 when audited)."""
    return 25.0 if 25.0 in percentiles else sorted(percentiles)[len(percentiles) // 2]


def _p(value: float) -> str:
    return f"{value:g}"


def column_names(cfg: AuditConfig, codes: Sequence[str]) -> list[str]:
    """The per-image table's header: fixed columns, then per method and condition."""
    columns = [
        "model",
        "index",
        "key",
        "path",
        "status",
        "reason",
        "label",
        "n_gt_boxes",
        "p_clean",
        "p_pgd",
        "pred_clean",
        "pred_pgd",
        "linf",
        "det_n_clean",
        "det_max_clean",
        "det_n_pgd",
        "det_max_pgd",
        "det_gt_iou",
        "box_share",
        "pointing_baseline",
        "det_box_share_clean",
        "det_box_share_pgd",
    ]
    focus = _p(focus_percentile(cfg.percentiles))
    for code in map(method_column, codes):
        for cond in CONDITIONS:
            columns += [f"{code}_{cond}_cov{_p(p)}" for p in cfg.percentiles]
            columns += [
                f"{code}_{cond}_energy",
                f"{code}_{cond}_pointing",
                f"{code}_{cond}_det_cov{focus}",
                f"{code}_{cond}_det_energy",
            ]
        columns += [f"{code}_rho", f"{code}_top{focus}"]
        if code == "IG":
            columns += ["IG_clean_delta", "IG_pgd_delta"]
    return columns


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


def _detect(
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
    """Audit ``images`` ``(B, 1, S, S)`` (the classifier's inputs for ``items``) with one classifier."""
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
            found = {cond: _detect(detector, inputs[cond], cfg, device) for cond in CONDITIONS}

    with timer("metrics"):
        focus = focus_percentile(cfg.percentiles)
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
            row: dict[str, Any] = {
                "model": clf.name,
                "index": item.index,
                "key": item.key,
                "path": str(item.path),
                "status": "ok",
                "reason": "",
                "label": "" if item.label is None else int(item.label),
                "n_gt_boxes": len(gt),
                "p_clean": float(p_clean[k]),
                "p_pgd": float(p_adv[k]),
                "pred_clean": int(pred_clean[k]),
                "pred_pgd": int(pred_adv[k]),
                "linf": float(linf[k]),
            }
            gt_mask = boxes_mask(gt, size, size) if gt else None
            if (
                gt_mask is not None and not gt_mask.any()
            ):  # boxes entirely in the padding: nothing to score
                gt_mask = None
            if gt_mask is not None:
                row["box_share"] = float(gt_mask.mean())
            det_masks: dict[str, np.ndarray | None] = {}
            for cond in CONDITIONS if detector is not None else ():
                boxes, scores = found[cond][k]
                kept = _confident((boxes, scores), cfg.det_conf)
                row[f"det_n_{cond}"] = len(kept)
                row[f"det_max_{cond}"] = float(max(scores, default=0.0))
                det_mask = boxes_mask(kept, size, size) if kept else None
                det_masks[cond] = det_mask if det_mask is not None and det_mask.any() else None
                if det_masks[cond] is not None:
                    row[f"det_box_share_{cond}"] = float(det_masks[cond].mean())
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
                row["det_gt_iou"] = float(
                    np.mean([max((box_iou(g, d) for d in kept_clean), default=0.0) for g in gt])
                )
            # each map is sorted once and each mask's pointing zone computed once, for every metric below
            gt_near = (
                near_mask(gt_mask, tolerance_px=cfg.pointing_tolerance)
                if gt_mask is not None
                else None
            )
            det_near = {
                cond: near_mask(m, tolerance_px=cfg.pointing_tolerance)
                for cond, m in det_masks.items()
                if m is not None
            }
            for code in clf.explainers:
                col = method_column(code)
                ranked = {cond: RankedMap.of(maps[code, cond][k]) for cond in CONDITIONS}
                for cond in CONDITIONS:
                    attr = ranked[cond]
                    if gt_mask is not None:
                        scores_gt = localization_scores(
                            attr,
                            gt_mask,
                            percentiles=cfg.percentiles,
                            tolerance_px=cfg.pointing_tolerance,
                            near=gt_near,
                        )
                        for p in cfg.percentiles:
                            row[f"{col}_{cond}_cov{_p(p)}"] = scores_gt[f"coverage@{_p(p)}"]
                        row[f"{col}_{cond}_energy"] = scores_gt["energy_in_box"]
                        row[f"{col}_{cond}_pointing"] = scores_gt["pointing_game"]
                        row.setdefault("pointing_baseline", scores_gt["pointing_baseline"])
                    det_mask = det_masks.get(cond)
                    if det_mask is not None:
                        scores_det = localization_scores(
                            attr,
                            det_mask,
                            percentiles=(focus,),
                            tolerance_px=cfg.pointing_tolerance,
                            near=det_near[cond],
                        )
                        row[f"{col}_{cond}_det_cov{_p(focus)}"] = scores_det[
                            f"coverage@{_p(focus)}"
                        ]
                        row[f"{col}_{cond}_det_energy"] = scores_det["energy_in_box"]
                row[f"{col}_rho"] = rank_correlation(ranked["clean"], ranked["pgd"])
                row[f"{col}_top{_p(focus)}"] = topk_intersection(
                    ranked["clean"], ranked["pgd"], p=focus
                )
                if code == "IG":
                    for cond, delta in deltas.items():
                        row[f"IG_{cond}_delta"] = float(delta[k])
            out.rows.append(row)
    if cfg.save_maps:
        out.maps = {
            f"{method_column(code)}_{cond}": m.astype(np.float16)
            for (code, cond), m in maps.items()
        }
        out.maps["index"] = np.array([item.index for item in items], dtype=np.int64)
    return out
