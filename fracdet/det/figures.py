"""Figures of a detector evaluation: the COCO PR curve and boxes drawn on example images.

matplotlib figures without pyplot (rendered by Agg on save): evaluations run on headless
servers and inside other programs, whose matplotlib backend is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.data.formats import Box, box_from_coco
from fracdet.data.geometry import match_boxes
from fracdet.errors import ImageError
from fracdet.report.figures import new_figure, new_grid, save_figure

__all__ = ["plot_pr_curve", "plot_examples"]

logger = logging.getLogger(__name__)

GT_COLOR, TP_COLOR, FP_COLOR = "#22c55e", "#3b82f6", "#ef4444"  # green, blue, red


def plot_pr_curve(coco: Mapping[str, Any], path: Path, *, title: str = "") -> Path:
    """Precision-recall at IoU 0.5 per class, from :func:`~fracdet.det.evaluate.coco_map`'s ``pr_curve``."""
    curve = coco["pr_curve"]
    fig, ax = new_figure((5, 4.5))
    drawn = 0
    for name, precision in curve["precision"].items():
        if precision is None:
            continue
        ap50 = (coco["per_class_ap"].get(name) or {}).get("ap50")
        label = f"{name} (AP50 {ap50:.3f})" if ap50 is not None else name
        ax.plot(curve["recall"], precision, lw=1.8, label=label)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no ground-truth boxes in this split", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision (COCO 101-point, interpolated)")
    ax.set_title(title or "Precision-recall at IoU 0.5", fontsize=10)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="lower left", fontsize=8)
    save_figure(fig, path)
    return path


def plot_examples(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    images_dir: Path,
    path: Path,
    *,
    count: int = 6,
    score_threshold: float = 0.25,
    columns: int = 3,
) -> Path | None:
    """A grid of images with ground truth (green), true positives (blue) and false positives (red).

    Boxes scoring below ``score_threshold`` are not drawn. Fractured images come first, then
    the images with the most confident false positives: those are what a reader wants to see.
    Returns ``None`` when no image could be drawn.
    """
    from fracdet.data.images import load_image

    first_id = min((c["id"] for c in gt["categories"]), default=1)
    truth: dict[int, list[Box]] = {}
    for ann in gt.get("annotations", []):
        truth.setdefault(ann["image_id"], []).append(box_from_coco(ann["bbox"], ann["category_id"] - first_id))
    shown: dict[int, list[tuple[Box, float]]] = {}
    for row in results:
        if row["score"] >= score_threshold:
            shown.setdefault(row["image_id"], []).append((box_from_coco(row["bbox"], row["category_id"] - first_id), float(row["score"])))
    images = {img["id"]: img for img in gt["images"]}

    def interest(image_id: int) -> tuple[int, float]:
        hits = match_boxes(truth.get(image_id, []), shown.get(image_id, []))
        worst_fp = max((s for (_, s), hit in zip(shown.get(image_id, []), hits, strict=True) if not hit), default=0.0)
        return (0 if truth.get(image_id) else 1, -worst_fp)

    picked = sorted(images, key=lambda i: (*interest(i), i))[:count]
    panels = []
    for image_id in picked:
        file = images_dir / images[image_id]["file_name"]
        try:
            panels.append((image_id, load_image(file)))
        except (ImageError, OSError) as exc:
            logger.debug("examples figure: %s skipped (%s)", file, exc)
    if not panels:
        return None
    from matplotlib.patches import Rectangle

    cols = min(columns, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = new_grid((3.2 * cols, 3.4 * rows), rows, cols)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image_id, pixels) in zip(axes.flat, panels, strict=False):
        ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0)
        boxes = shown.get(image_id, [])
        hits = match_boxes(truth.get(image_id, []), boxes)
        for box in truth.get(image_id, []):
            ax.add_patch(Rectangle((box.x1, box.y1), box.width, box.height, fill=False, ec=GT_COLOR, lw=2.0))
        for (box, score), hit in zip(boxes, hits, strict=True):
            color = TP_COLOR if hit else FP_COLOR
            ax.add_patch(Rectangle((box.x1, box.y1), box.width, box.height, fill=False, ec=color, lw=1.2, ls="--"))
            ax.text(box.x1, box.y1, f"{score:.2f}", color=color, fontsize=6, va="bottom")
        n_tp = int(np.sum(hits))
        ax.set_title(f"{images[image_id]['file_name']}\nGT {len(truth.get(image_id, []))}  TP {n_tp}  FP {len(boxes) - n_tp}", fontsize=7)
    fig.suptitle(f"green: ground truth, blue: true positive, red: false positive (score >= {score_threshold:g})", fontsize=8)
    save_figure(fig, path)
    return path
