"""Detection metrics: COCO mAP through pycocotools, and image-level fracture scores.

Ground truth and predictions stay in the annotation model (:class:`~fracdet.data.formats.Box`
lists per :class:`~fracdet.data.formats.ImageRecord`) until the pycocotools boundary:
:func:`to_coco_gt` and :func:`to_coco_results` build COCO's dicts there, numbering the images
1..n in the order given (or with the ground-truth file's own ids), and :func:`coco_map` wraps
COCOeval's stateful
evaluate/accumulate/summarize into one call that returns a dict.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fracdet.confusion import confusion_at
from fracdet.data.coco import coco_document
from fracdet.data.formats import Box, ImageRecord, box_to_coco
from fracdet.errors import DataError
from fracdet.resample import bootstrap_indices

__all__ = [
    "to_coco_gt",
    "to_coco_results",
    "predictions_to_coco_results",
    "coco_map",
    "bootstrap_map_ci",
    "image_level_scores",
    "image_level_metrics",
]

logger = logging.getLogger(__name__)

# COCO's area ranges (pixels^2) for small / medium / large objects.
_SMALL, _MEDIUM = 32**2, 96**2


# --- the pycocotools boundary --------------------------------------------------------------


def to_coco_gt(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    image_ids: Sequence[int | str] | None = None,
) -> dict[str, Any]:
    """A COCO ground-truth dict of ``records``: image ``k`` (1-based) is ``records[k - 1]``, or has
    ``image_ids[k - 1]``.

    Category ids are ``Box.label + 1``, as the converter writes them; images without boxes are
    listed too (false positives on them cost precision).
    """
    return coco_document(records, class_names, lambda record: record.image_id, image_ids=image_ids)


def predictions_to_coco_results(
    image_id: int | str,
    boxes: Sequence[Box],
    scores: Sequence[float],
    *,
    first_category_id: int = 1,
) -> list[dict[str, Any]]:
    """COCO results rows for one image from pixel-xyxy boxes (``Box.label`` is the 0-based class).

    Category ids are ``label + first_category_id``: 1-based, as in the converter's ground truth.
    """
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    return [
        {
            "image_id": image_id if isinstance(image_id, str) else int(image_id),
            "category_id": int(box.label) + first_category_id,
            "bbox": [round(float(v), 3) for v in box_to_coco(box)],
            "score": round(float(score), 6),
        }
        for box, score in zip(boxes, scores, strict=True)
    ]


def to_coco_results(
    predictions: Sequence[tuple[Sequence[Box], Sequence[float]]],
    image_ids: Sequence[int | str] | None = None,
) -> list[dict[str, Any]]:
    """COCO results rows for ``(boxes, scores)`` per image, numbered as :func:`to_coco_gt` numbers
    them.
    """
    numbered = zip(image_ids or range(1, len(predictions) + 1), predictions, strict=True)
    return [
        row
        for image_id, (boxes, scores) in numbered
        for row in predictions_to_coco_results(image_id, boxes, scores)
    ]


# --- COCO mAP ------------------------------------------------------------------------------


def _complete(gt: Mapping[str, Any]) -> dict[str, Any]:
    """A private copy with the fields pycocotools needs (ids, areas, iscrowd) filled in."""
    if "images" not in gt or "categories" not in gt:
        raise DataError("not a COCO detection ground truth (needs images and categories)")
    doc = copy.deepcopy(dict(gt))
    doc.setdefault("annotations", [])
    for index, ann in enumerate(doc["annotations"], start=1):
        ann.setdefault("id", index)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
    return doc


def _check_results(doc: dict[str, Any], results: Sequence[Mapping[str, Any]]) -> None:
    image_ids = {img["id"] for img in doc["images"]}
    category_ids = {c["id"] for c in doc["categories"]}
    for row in results:
        if row.get("image_id") not in image_ids:
            raise DataError(
                f"a prediction refers to image id {row.get('image_id')!r}, which the ground "
                "truth does not list"
            )
        if row.get("category_id") not in category_ids:
            raise DataError(
                f"a prediction has category id {row.get('category_id')!r}; the ground truth "
                f"has {sorted(category_ids)}"
            )


def _none_if_missing(value: float) -> float | None:
    """COCOeval writes -1 where a number does not exist (no ground truth in that bucket)."""
    return None if value is None or value < 0 else float(value)


def coco_map(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """COCO bbox metrics of ``results`` against the COCO ground-truth dict ``gt``, via pycocotools.

    ``gt`` is what :func:`to_coco_gt` builds (any complete COCO detection dict works);
    ``results`` are COCO results rows (:func:`to_coco_results`). Neither is modified.
    Returns ``map_50_95``, ``map_50``, ``map_75``, ``map_small``, ``map_medium``,
    ``map_large``, ``ar_100``, ``per_class_ap`` (name -> ``{"ap50_95", "ap50"}``) and
    ``pr_curve`` (precision at IoU 0.5 on COCO's 101 recall points, per class). A value is
    ``None`` where it does not exist (no ground-truth box in that class or size range); no
    predictions at all score 0 (pycocotools itself cannot load an empty result list).
    """
    doc = _complete(gt)
    _check_results(doc, results)
    categories = sorted(doc["categories"], key=lambda c: c["id"])
    recall = [round(float(r), 2) for r in np.linspace(0.0, 1.0, 101)]
    if not results:
        return _empty_result(doc, categories, recall)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools narrates every step on stdout
        coco_gt = COCO()
        coco_gt.dataset = doc
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(list(results)))  # loadRes edits the rows it gets
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    precision = evaluator.eval[
        "precision"
    ]  # [IoU thresholds, recall points, classes, areas, max dets]
    per_class: dict[str, dict[str, float | None]] = {}
    curves: dict[str, list[float] | None] = {}
    for k, category in enumerate(categories):
        p_all = precision[:, :, k, 0, -1]
        p_50 = precision[0, :, k, 0, -1]
        per_class[category["name"]] = {
            "ap50_95": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else None,
            "ap50": float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else None,
        }
        curves[category["name"]] = [round(float(v), 6) for v in p_50] if (p_50 > -1).any() else None
    return {
        "map_50_95": _none_if_missing(stats[0]),
        "map_50": _none_if_missing(stats[1]),
        "map_75": _none_if_missing(stats[2]),
        "map_small": _none_if_missing(stats[3]),
        "map_medium": _none_if_missing(stats[4]),
        "map_large": _none_if_missing(stats[5]),
        "ar_100": _none_if_missing(stats[8]),
        "per_class_ap": per_class,
        "pr_curve": {"iou": 0.5, "recall": recall, "precision": curves},
        "n_images": len(doc["images"]),
        "n_gt_boxes": sum(1 for a in doc["annotations"] if not a.get("iscrowd")),
        "n_predictions": len(results),
    }


def bootstrap_map_ci(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap ``(1 - alpha)`` CIs of mAP@0.5 and mAP@0.5:0.95, resampling images.

    A test split of a few dozen images gives mAP a wide interval; papers rarely say so, and a
    comparison with their numbers needs it. Each replicate draws the images with replacement
    (a drawn-twice image counts twice, boxes and predictions alike) and reruns
    :func:`coco_map`; replicates without any ground-truth box are left out. Seeded.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    doc = _complete(gt)
    images = doc["images"]
    boxes_of: dict[Any, list[dict[str, Any]]] = {img["id"]: [] for img in images}
    found_of: dict[Any, list[Mapping[str, Any]]] = {img["id"]: [] for img in images}
    for ann in doc["annotations"]:
        boxes_of.setdefault(ann["image_id"], []).append(ann)
    for row in results:
        found_of.setdefault(row["image_id"], []).append(row)
    draws: dict[str, list[float]] = {"map_50": [], "map_50_95": []}
    # one replicate per draw (chunk_cells=1): the numbers a seed gave before stay the same
    for (picks,) in bootstrap_indices(len(images), n_boot, seed=seed, chunk_cells=1):
        new_images, new_boxes, new_results = [], [], []
        for new_id, k in enumerate(picks.tolist(), start=1):
            old_id = images[k]["id"]
            new_images.append({**images[k], "id": new_id})
            new_boxes += [
                {**ann, "id": len(new_boxes) + j + 1, "image_id": new_id}
                for j, ann in enumerate(boxes_of[old_id])
            ]
            new_results += [{**row, "image_id": new_id} for row in found_of[old_id]]
        if not new_boxes:
            continue
        scores = coco_map({**doc, "images": new_images, "annotations": new_boxes}, new_results)
        for key in draws:
            if scores[key] is not None:
                draws[key].append(scores[key])
    return {
        f"{key}_ci95": [float(v) for v in np.quantile(x, [alpha / 2, 1 - alpha / 2])]
        if len(x) >= 2
        else None
        for key, x in draws.items()
    }


def _empty_result(
    doc: dict[str, Any], categories: list[dict[str, Any]], recall: list[float]
) -> dict[str, Any]:
    """What COCOeval would say about no predictions: 0 where ground truth exists, else None."""
    boxes = [a for a in doc["annotations"] if not a.get("iscrowd")]
    with_gt = {a["category_id"] for a in boxes}
    areas = [float(a["area"]) for a in boxes]

    def zero_if(present: bool) -> float | None:
        return 0.0 if present else None

    any_gt = bool(boxes)
    return {
        "map_50_95": zero_if(any_gt),
        "map_50": zero_if(any_gt),
        "map_75": zero_if(any_gt),
        "map_small": zero_if(any(a < _SMALL for a in areas)),
        "map_medium": zero_if(any(_SMALL <= a < _MEDIUM for a in areas)),
        "map_large": zero_if(any(a >= _MEDIUM for a in areas)),
        "ar_100": zero_if(any_gt),
        "per_class_ap": {
            c["name"]: {"ap50_95": zero_if(c["id"] in with_gt), "ap50": zero_if(c["id"] in with_gt)}
            for c in categories
        },
        "pr_curve": {
            "iou": 0.5,
            "recall": recall,
            "precision": {
                c["name"]: ([0.0] * len(recall) if c["id"] in with_gt else None) for c in categories
            },
        },
        "n_images": len(doc["images"]),
        "n_gt_boxes": len(boxes),
        "n_predictions": 0,
    }


# --- image level ---------------------------------------------------------------------------


def image_level_scores(
    truth: Sequence[Sequence[Box]], predicted_scores: Sequence[Sequence[float]]
) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, max_score)`` per image, from its ground-truth boxes and its box scores.

    An image is positive when it has at least one ground-truth box; its score is its best box
    score (0 when the detector found nothing).
    """
    if len(truth) != len(predicted_scores):
        raise ValueError(
            f"{len(truth)} ground-truth images but {len(predicted_scores)} predicted ones"
        )
    y_true = np.array([int(len(boxes) > 0) for boxes in truth], dtype=int)
    scores = np.array(
        [max((float(s) for s in found), default=0.0) for found in predicted_scores], dtype=float
    )
    return y_true, scores


def image_level_metrics(
    y_true: Sequence[int], scores: Sequence[float], threshold: float = 0.25
) -> dict[str, Any]:
    """AUROC of the image score, and sensitivity/specificity when ``score >= threshold`` calls it
    fractured.

    AUROC needs both classes: with one, it is ``None`` and ``auroc_note`` says why.
    """
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=float)
    counts = confusion_at(y, s, threshold)
    auroc: float | None = None
    note = None
    if len(set(y.tolist())) == 2:
        from sklearn.metrics import roc_auc_score

        auroc = float(roc_auc_score(y, s))
    else:
        only = "fractured" if y.size and y[0] == 1 else "non-fractured"
        note = f"AUROC undefined: every image is {only}" if y.size else "AUROC undefined: no images"
    return {
        "auroc": auroc,
        "auroc_note": note,
        "threshold": float(threshold),
        **counts.as_dict(),
        "n_positive": counts.n_positive,
        "n_negative": counts.n_negative,
    }
