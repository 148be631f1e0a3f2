"""From the per-image table to the audit's numbers: robustness, localization, detector, tests.

Pure aggregation over rows already written (so a merged or resumed audit summarizes exactly
like a single run). Every mean comes with a bootstrap CI and every localization number with
its random baseline.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from fracdet.audit.inputs import AuditInputs
from fracdet.audit.schema import (
    CONDITIONS,
    DELTA_METHODS,
    SPEARMAN,
    AuditSchema,
    input_column,
    input_key,
    mean_estimate,
    values,
)
from fracdet.audit.stats import paired_comparison, proportion_ci

__all__ = ["BOX_SIZES", "box_size_class", "summarize"]

logger = logging.getLogger(__name__)


def _robustness(
    rows: Sequence[dict[str, str]], threshold: float, *, has_labels: bool, n_boot: int, seed: int
) -> dict[str, Any]:
    from fracdet.cls.bootstrap import metrics_with_ci

    pred = {cond: values(rows, input_column("pred", cond)) for cond in CONDITIONS}
    flips = int(np.sum(pred["clean"] != pred["pgd"]))
    out: dict[str, Any] = {
        "n": len(rows),
        "flip_rate": flips / len(rows) if rows else None,
        "flip_rate_ci95": list(proportion_ci(flips, len(rows))) if rows else None,
    }
    if not has_labels or not rows:
        return out
    y = values(rows, "label").astype(int)
    out["n_positive"] = int(y.sum())
    for cond in CONDITIONS:
        p = values(rows, input_column("p", cond))
        correct = int(np.sum((p >= threshold).astype(int) == y))
        out[input_key(cond, "accuracy")] = correct / len(y)
        out[input_key(cond, "accuracy_ci95")] = list(proportion_ci(correct, len(y)))
        try:
            m = metrics_with_ci(y, p, threshold=threshold, n_boot=n_boot, seed=seed)
        except ValueError as exc:  # e.g. too few images to resample
            logger.warning("no CIs for the %s metrics: %s", cond, exc)
            continue
        for key in ("auroc", "sensitivity", "specificity"):
            out[input_key(cond, key)] = m.get(key)
            out[input_key(cond, f"{key}_ci95")] = (m.get("ci95") or {}).get(key)
    out["delta_accuracy"] = out["pgd_accuracy"] - out["clean_accuracy"]
    return out


def _localization(
    rows: Sequence[dict[str, str]], schema: AuditSchema, *, n_boot: int, seed: int
) -> dict[str, Any]:
    def estimate(column: str) -> dict[str, Any]:
        return mean_estimate(values(rows, column), n_boot=n_boot, seed=seed)

    out: dict[str, Any] = {}
    for code in schema.methods:
        for cond in CONDITIONS:
            out[schema.localization_key(code, cond)] = {
                metric.key: estimate(schema.column(code, cond, metric))
                for metric in (*schema.gt_metrics(), *schema.det_metrics())
            }
        out[schema.stability_key(code)] = {
            SPEARMAN: estimate(schema.rho_column(code)),
            schema.topk_key(): estimate(schema.topk_column(code)),
        }
        if code in DELTA_METHODS:
            out[schema.delta_key(code)] = {
                cond: _finite_median(np.abs(values(rows, schema.delta_column(code, cond))))
                for cond in CONDITIONS
            }
    return out


#: Box size classes by ``box_share``, the boxes' share of the classifier's input: COCO's limits
#: for small / medium / large objects (32² and 96² px, pycocotools' ``areaRng``) taken relative
#: to COCO's typical 640x480 image (0.33% and 3%), so a class does not depend on the classifier's
#: input size. A box under 0.33% of a 224 px input is under 13 x 13 px, less than half the side
#: of a stride-32 backbone's Grad-CAM cell; FracAtlas's boxes (mean share 0.5%) sit around the
#: small/medium limit, the demo's phantom boxes (0.7-6%) in medium and large.
BOX_SIZES: dict[str, tuple[float, float]] = {
    "small": (0.0, 32**2 / (640 * 480)),
    "medium": (32**2 / (640 * 480), 96**2 / (640 * 480)),
    "large": (96**2 / (640 * 480), float("inf")),
}


def box_size_class(share: np.ndarray) -> np.ndarray:
    """Each image's box size class (:data:`BOX_SIZES`, lower limit included); ``""``: no box."""
    share = np.asarray(share, dtype=np.float64)
    out = np.full(share.shape, "", dtype=object)
    for name, (low, high) in BOX_SIZES.items():
        out[(share >= low) & (share < high)] = name
    return out


def _by_box_size(
    rows: Sequence[dict[str, str]], schema: AuditSchema, *, n_boot: int, seed: int
) -> dict[str, Any]:
    """Coverage at the focus percentile per box size class: is a small fracture found as often?

    A random map's coverage is p/100 whatever the box's size, so the classes compare directly.
    """
    size = box_size_class(values(rows, "box_share"))
    metric = schema.coverage()
    out: dict[str, Any] = {"n": {name: int(np.sum(size == name)) for name in BOX_SIZES}}
    for code in schema.methods:
        for cond in CONDITIONS:
            x = values(rows, schema.column(code, cond, metric))
            out[schema.localization_key(code, cond)] = {
                name: mean_estimate(x[size == name], n_boot=n_boot, seed=seed) for name in BOX_SIZES
            }
    return out


def _finite_median(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None


def _baselines(rows: Sequence[dict[str, str]], schema: AuditSchema) -> dict[str, Any]:
    """What a random map scores: p% coverage, the box-area share of energy, and so on.

    Each :class:`~fracdet.audit.schema.MapMetric`'s own baseline, and the detector boxes' share.
    """
    out: dict[str, Any] = {}
    for metric in schema.gt_metrics():
        if isinstance(metric.baseline, str):  # a per-image column: its mean over the images
            x = values(rows, metric.baseline)
            out[metric.key] = float(np.nanmean(x)) if np.isfinite(x).any() else None
        elif metric.baseline is not None:
            out[metric.key] = metric.baseline
    out["det_box_share"] = {
        cond: _finite_mean(values(rows, input_column("det_box_share", cond))) for cond in CONDITIONS
    }
    return out


def _finite_mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _agreement(
    rows: Sequence[dict[str, str]], det_conf: float, *, has_labels: bool
) -> dict[str, Any]:
    """Does the detector call the same images fractured as the classifier (and as the truth)?"""
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    out: dict[str, Any] = {}
    y = values(rows, "label") if has_labels else None
    for cond in CONDITIONS:
        det_max = values(rows, input_column("det_max", cond))
        called = (det_max >= det_conf).astype(int)
        pred = values(rows, input_column("pred", cond)).astype(int)
        same = int(np.sum(called == pred))
        kappa = None
        if len(set(called.tolist()) | set(pred.tolist())) > 1:
            kappa = float(cohen_kappa_score(called, pred))
        entry: dict[str, Any] = {
            "agreement": same / len(rows),
            "agreement_ci95": list(proportion_ci(same, len(rows))),
            "cohen_kappa": kappa,
        }
        if y is not None and len(set(y.tolist())) == 2:
            entry["det_image_auroc"] = float(roc_auc_score(y.astype(int), det_max))
        out[cond] = entry
    out["det_gt_iou"] = _finite_mean(values(rows, "det_gt_iou"))
    return out


def _detector_map(
    model_rows: Sequence[dict[str, str]], detections: Sequence[dict[str, Any]], inputs: AuditInputs
) -> dict[str, Any]:
    """pycocotools mAP of the detector on the classifier's clean and PGD inputs.

    Boxes in the original frame.
    """
    from fracdet.data.formats import Box, clip_box
    from fracdet.data.geometry import box_from_model_frame
    from fracdet.det.coco_eval import coco_map, predictions_to_coco_results, to_coco_gt

    ok = {int(r["index"]) for r in model_rows}
    items = [it for it in inputs.items if it.index in ok]
    coco_id = {it.index: k + 1 for k, it in enumerate(items)}
    by_index = {it.index: it for it in items}
    gt = to_coco_gt([it.record() for it in items], inputs.box_class_names)
    out: dict[str, Any] = {}
    for cond in CONDITIONS:
        results: list[dict[str, Any]] = []
        for entry in detections:
            if entry["cond"] != cond or entry["index"] not in coco_id:
                continue
            item = by_index[entry["index"]]
            boxes, scores = [], []
            for x1, y1, x2, y2, label, score in entry["boxes"]:
                box = box_from_model_frame(
                    Box(x1, y1, x2, y2, int(label)),
                    item.height,
                    item.width,
                    entry["size"],
                    keep_aspect=entry.get("keep_aspect", True),
                )
                clipped, _ = clip_box(box, item.width, item.height)
                if clipped is not None:
                    boxes.append(clipped)
                    scores.append(score)
            results += predictions_to_coco_results(coco_id[entry["index"]], boxes, scores)
        coco = coco_map(gt, results)
        out[cond] = {
            "map_50": coco.get("map_50"),
            "map_50_95": coco.get("map_50_95"),
            "n_boxes": len(results),
        }
    return out


def _paired(
    per_model: dict[str, list[dict[str, str]]],
    schema: AuditSchema,
    *,
    n_boot: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Each pair of classifiers, each method: coverage and energy compared image by image."""
    tests = []
    for a, b in itertools.combinations(per_model, 2):
        # localization exists only for images with boxes: pair those (no NaN noise from the rest)
        rows_a = {int(r["index"]): r for r in per_model[a] if int(r.get("n_gt_boxes") or 0) > 0}
        rows_b = {int(r["index"]): r for r in per_model[b] if int(r.get("n_gt_boxes") or 0) > 0}
        common = sorted(set(rows_a) & set(rows_b))
        ra, rb = [rows_a[i] for i in common], [rows_b[i] for i in common]
        for code in schema.methods:
            for cond in CONDITIONS:
                for metric in schema.focus_metrics():
                    column = schema.column(code, cond, metric)
                    result = paired_comparison(
                        values(ra, column), values(rb, column), n_boot=n_boot, seed=seed
                    )
                    tests.append(
                        {
                            "a": a,
                            "b": b,
                            "method": code,
                            "input": cond,
                            "metric": metric.key,
                            **result,
                        }
                    )
    return tests


def summarize(
    rows: Sequence[dict[str, str]],
    detections: Sequence[dict[str, Any]],
    inputs: AuditInputs,
    state: dict[str, Any],
) -> dict[str, Any]:
    """Every number of the report, JSON-ready (methods and percentiles: the state's schema)."""
    config = state["config"]
    n_boot, seed = int(config["n_boot"]), int(config["seed"])
    schema = AuditSchema.from_state(state)
    models = list(state["identity"]["classifiers"])
    per_model = {m: [r for r in rows if r["model"] == m and r["status"] == "ok"] for m in models}
    skipped = [
        {"model": r["model"], "path": r["path"], "reason": r["reason"]}
        for r in rows
        if r["status"] != "ok"
    ]
    with_det = state["identity"].get("detector") is not None
    out: dict[str, Any] = {
        "models": models,
        "n_images": len(inputs.items),
        "methods": list(schema.methods),
        "percentiles": list(schema.percentiles),
        "focus_percentile": schema.focus,
        "has_labels": inputs.has_labels,
        "has_boxes": inputs.has_boxes,
        "skipped": skipped,
        "robustness": {},
        "localization": {},
        "baselines": {},
        "by_box_size": {
            "metric": schema.coverage().key,
            "limits": {
                name: [low, None if high == float("inf") else high]
                for name, (low, high) in BOX_SIZES.items()
            },
            "models": {},
        },
        "agreement": {},
        "detector": {},
    }
    for model, model_rows in per_model.items():
        identity = state["identity"]["classifiers"][model]
        out["robustness"][model] = {
            "adv_training": identity.get("adv"),
            **_robustness(
                model_rows,
                float(identity["threshold"]),
                has_labels=inputs.has_labels,
                n_boot=n_boot,
                seed=seed,
            ),
        }
        out["localization"][model] = _localization(model_rows, schema, n_boot=n_boot, seed=seed)
        out["baselines"][model] = _baselines(model_rows, schema)
        out["by_box_size"]["models"][model] = _by_box_size(
            model_rows, schema, n_boot=n_boot, seed=seed
        )
        if with_det and model_rows:
            out["agreement"][model] = _agreement(
                model_rows, float(config["det_conf"]), has_labels=inputs.has_labels
            )
            if inputs.has_labels:
                model_detections = [d for d in detections if d["model"] == model]
                out["detector"][model] = _detector_map(model_rows, model_detections, inputs)
    out["paired_tests"] = (
        _paired(per_model, schema, n_boot=n_boot, seed=seed)
        if len(models) > 1 and inputs.has_boxes
        else []
    )
    if config.get("group_by"):
        from fracdet.audit.groups import summarize_groups

        thresholds = {m: float(state["identity"]["classifiers"][m]["threshold"]) for m in models}
        out["groups"] = summarize_groups(
            per_model,
            inputs,
            config["group_by"],
            schema,
            thresholds=thresholds,
            det_conf=float(config["det_conf"]) if with_det else None,
            n_boot=n_boot,
            seed=seed,
        )
    return out
