"""Figures of a detector evaluation: precision-recall curves and boxes drawn on example images.

Everything arrives as arguments (curves as lists, boxes as :class:`~fracdet.data.formats.Box`),
so the report package needs nothing from the detection track it sits below.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from fracdet.data.formats import Box, ImageRecord
from fracdet.data.geometry import match_boxes
from fracdet.errors import ImageError
from fracdet.report.figures import new_figure, new_grid, save_figure

__all__ = ["GT_COLOR", "TP_COLOR", "FP_COLOR", "plot_pr_curve", "pick_examples", "plot_examples"]

logger = logging.getLogger(__name__)

GT_COLOR, TP_COLOR, FP_COLOR = "#22c55e", "#3b82f6", "#ef4444"  # green, blue, red

Predictions = Sequence[tuple[Sequence[Box], Sequence[float]]]


def plot_pr_curve(
    recall: Sequence[float],
    precision: Mapping[str, Sequence[float] | None],
    path: Path,
    *,
    ap50: Mapping[str, float | None] | None = None,
    title: str = "",
) -> Path:
    """Precision against ``recall`` per class (``None``: the class has no ground truth, not drawn).

    ``ap50`` adds each class's AP to its legend entry.
    """
    fig, ax = new_figure((5, 4.5))
    drawn = 0
    for name, values in precision.items():
        if values is None:
            continue
        ap = (ap50 or {}).get(name)
        ax.plot(recall, values, lw=1.8, label=f"{name} (AP50 {ap:.3f})" if ap is not None else name)
        drawn += 1
    if not drawn:
        ax.text(
            0.5,
            0.5,
            "no ground-truth boxes in this split",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="recall",
        ylabel="precision (COCO 101-point, interpolated)",
    )
    ax.set_title(title or "Precision-recall at IoU 0.5", fontsize=10)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="lower left", fontsize=8)
    save_figure(fig, path)
    return path


def _shown(predictions: Predictions, score_threshold: float) -> list[list[tuple[Box, float]]]:
    return [
        [(box, float(s)) for box, s in zip(boxes, scores, strict=True) if s >= score_threshold]
        for boxes, scores in predictions
    ]


def pick_examples(
    truth: Sequence[Sequence[Box]], predictions: Predictions, *, count: int, score_threshold: float
) -> list[int]:
    """Indices of the images worth showing: fractured ones first, then those with the most
    confident false positives.

    Ties keep the input order; boxes below ``score_threshold`` do not count.
    """
    shown = _shown(predictions, score_threshold)

    def interest(i: int) -> tuple[int, float, int]:
        hits = match_boxes(truth[i], shown[i])
        worst_fp = max(
            (s for (_, s), hit in zip(shown[i], hits, strict=True) if not hit), default=0.0
        )
        return (0 if truth[i] else 1, -worst_fp, i)

    return sorted(range(len(truth)), key=interest)[:count]


def plot_examples(
    records: Sequence[ImageRecord],
    predictions: Predictions,
    path: Path,
    *,
    count: int = 6,
    score_threshold: float = 0.25,
    columns: int = 3,
) -> Path | None:
    """A grid of images with ground truth (green), true positives (blue) and false positives (red).

    ``predictions[i]`` are the ``(boxes, scores)`` of ``records[i]``, in its original frame.
    Boxes scoring below ``score_threshold`` are not drawn; :func:`pick_examples` chooses the
    images. Returns ``None`` when no image could be drawn.
    """
    from fracdet.data.images import load_image

    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    shown = _shown(predictions, score_threshold)
    panels = []
    for i in pick_examples(
        [r.boxes for r in records], predictions, count=count, score_threshold=score_threshold
    ):
        try:
            panels.append((i, load_image(records[i].path)))
        except (ImageError, OSError) as exc:
            logger.debug("examples figure: %s skipped (%s)", records[i].path, exc)
    if not panels:
        return None
    from matplotlib.patches import Rectangle

    cols = min(columns, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = new_grid((3.2 * cols, 3.4 * rows), rows, cols)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (i, pixels) in zip(axes.flat, panels, strict=False):
        ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0)
        truth = records[i].boxes
        hits = match_boxes(truth, shown[i])
        for box in truth:
            ax.add_patch(
                Rectangle((box.x1, box.y1), box.width, box.height, fill=False, ec=GT_COLOR, lw=2.0)
            )
        for (box, score), hit in zip(shown[i], hits, strict=True):
            color = TP_COLOR if hit else FP_COLOR
            ax.add_patch(
                Rectangle(
                    (box.x1, box.y1), box.width, box.height, fill=False, ec=color, lw=1.2, ls="--"
                )
            )
            ax.text(box.x1, box.y1, f"{score:.2f}", color=color, fontsize=6, va="bottom")
        n_tp = sum(hits)
        ax.set_title(
            f"{records[i].image_id}\nGT {len(truth)}  TP {n_tp}  FP {len(shown[i]) - n_tp}",
            fontsize=7,
        )
    fig.suptitle(
        "green: ground truth, blue: true positive, red: false positive "
        f"(score >= {score_threshold:g})",
        fontsize=8,
    )
    save_figure(fig, path)
    return path
