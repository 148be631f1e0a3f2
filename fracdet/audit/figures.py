"""The audit's figures: robustness bars, coverage bars against the random baseline, and the grid.

The grid follows the robust-transfer study's figure: each row an image with its ground-truth
boxes (red) and the detector's boxes (green), then each method's map on the clean input and
on its PGD counterpart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.audit.schema import CONDITIONS, AuditSchema, input_key
from fracdet.report.figures import new_figure, new_grid, save_figure

__all__ = ["plot_robustness", "plot_coverage", "plot_grid", "GridRow"]

logger = logging.getLogger(__name__)

GT_COLOR, DET_COLOR = "#ef4444", "#22c55e"


def plot_robustness(robustness: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Clean vs PGD accuracy per classifier, with 95% CIs."""
    models = list(robustness)
    fig, ax = new_figure((1.6 + 1.3 * len(models), 3.6))
    x = np.arange(len(models))
    for offset, cond, color in zip((-0.18, 0.18), CONDITIONS, ("#3b82f6", "#f97316"), strict=True):
        acc = [robustness[m].get(input_key(cond, "accuracy")) or 0.0 for m in models]
        ci = [
            robustness[m].get(input_key(cond, "accuracy_ci95")) or [a, a]
            for m, a in zip(models, acc, strict=True)
        ]
        err = np.array(
            [
                [a - lo for a, (lo, _) in zip(acc, ci, strict=True)],
                [hi - a for a, (_, hi) in zip(acc, ci, strict=True)],
            ]
        )
        err = np.clip(
            err, 0.0, None
        )  # an interval's end can round a hair inside the estimate (acc 0 or 1)
        ax.bar(
            x + offset, acc, width=0.36, color=color, yerr=err, capsize=3, label=f"{cond} accuracy"
        )
    ax.set_xticks(x, models, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy on clean and on PGD inputs (95% CI)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_coverage(
    localization: Mapping[str, Mapping[str, Any]], schema: AuditSchema, path: Path
) -> Path:
    """coverage@focus per method, a bar per classifier and input; dashed: a random map."""
    codes, focus = schema.methods, schema.focus
    models = list(localization)
    fig, ax = new_figure((1.8 + 1.2 * len(codes) * max(1, len(models)) / 2, 3.8))
    width = 0.8 / (2 * len(models))
    x = np.arange(len(codes))
    key = schema.coverage().key
    for k, model in enumerate(models):
        for j, cond in enumerate(CONDITIONS):
            means = [
                (
                    localization[model].get(schema.localization_key(code, cond), {}).get(key) or {}
                ).get("mean")
                or 0.0
                for code in codes
            ]
            offset = (2 * k + j) * width - 0.4 + width / 2
            ax.bar(
                x + offset,
                means,
                width=width,
                color=f"C{k}",
                alpha=1.0 if cond == "clean" else 0.45,
                hatch=None if cond == "clean" else "//",
                label=f"{model} ({cond})",
            )
    ax.axhline(focus / 100.0, ls="--", color="grey", lw=1, label=f"random map ({focus:g}%)")
    ax.set_xticks(x, list(codes))
    ax.set_ylim(0, 1.0)
    ax.set_ylabel(f"share of box pixels in the top {focus:g}%")
    ax.set_title(
        f"coverage@{focus:g}: how much of the fracture box the top-{focus:g}% attributed pixels "
        "cover",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


@dataclass(frozen=True)
class GridRow:
    """One image of the grid: pixels, boxes (model frame, xyxy), a map per column, a caption."""

    image: np.ndarray
    gt: Sequence[Sequence[float]]
    det: Sequence[Sequence[float]]
    maps: Sequence[np.ndarray]
    caption: str


def _boxes(ax: Any, boxes: Sequence[Sequence[float]], color: str) -> None:
    from matplotlib.patches import Rectangle

    for x1, y1, x2, y2 in (b[:4] for b in boxes):
        ax.add_patch(
            Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec=color, lw=1.4)
        )


def plot_grid(rows: Sequence[GridRow], columns: Sequence[str], path: Path, *, title: str) -> Path:
    """Images (with boxes) then one map per column; each map scaled to its own [0, max]."""
    n_cols = 1 + len(columns)
    fig, axes = new_grid((1.55 * n_cols, 1.7 * len(rows) + 0.5), len(rows), n_cols)
    for r, row in enumerate(rows):
        ax = axes[r][0]
        ax.imshow(row.image, cmap="gray", vmin=0, vmax=1)
        _boxes(ax, row.gt, GT_COLOR)
        _boxes(ax, row.det, DET_COLOR)
        ax.set_ylabel(row.caption, fontsize=6)
        for c, attribution in enumerate(row.maps, start=1):
            a = np.nan_to_num(attribution.astype(np.float32))
            top = float(np.percentile(a, 99.5)) or float(a.max()) or 1.0
            axes[r][c].imshow(row.image, cmap="gray", vmin=0, vmax=1)
            axes[r][c].imshow(np.clip(a / top, 0, 1), cmap="inferno", alpha=0.65, vmin=0, vmax=1)
            _boxes(axes[r][c], row.gt, GT_COLOR)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("image: GT red, detector green", fontsize=6)
    for c, name in enumerate(columns, start=1):
        axes[0][c].set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=8)
    return save_figure(fig, path, dpi=100)
