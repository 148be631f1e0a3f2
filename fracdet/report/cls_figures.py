"""Figures of a classifier evaluation and its training run: ROC, PR, confusion, reliability, curves.

The report package sits below the tracks, so these functions take arrays and precomputed
curves, never a model or a fracdet.cls object: ROC and PR curves are computed here with
scikit-learn, the operating point with :func:`fracdet.confusion.confusion_at`, and the
reliability diagram draws the curve the caller computed (so the ECE in its title is the one
in the metrics file).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from fracdet.confusion import check_binary_inputs, confusion_at
from fracdet.report.figures import mark_undefined, new_figure, new_grid, save_figure
from fracdet.report.tables import is_number

__all__ = [
    "BinnedCalibration",
    "plot_roc",
    "plot_pr",
    "plot_confusion",
    "plot_reliability",
    "plot_curves",
]

logger = logging.getLogger(__name__)

ONE_CLASS = "undefined: only one class in y_true"
OPERATING_POINT_COLOR = "crimson"


class BinnedCalibration(Protocol):
    """What :func:`plot_reliability` draws: equal-width probability bins and their statistics
    (``fracdet.cls.calibration.ReliabilityCurve`` is one); empty bins hold ``nan`` means."""

    bin_centers: np.ndarray
    mean_predicted: np.ndarray
    fraction_positive: np.ndarray
    counts: np.ndarray


def _rates_at(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(FPR, TPR, precision) of ``prob >= threshold``; precision is nan with no positive call."""
    counts = confusion_at(y, p, threshold)
    precision = counts.ppv
    return (
        float(counts.fpr or 0.0),
        float(counts.sensitivity or 0.0),
        math.nan if precision is None else precision,
    )


def _binary_curve(
    y_true: Any,
    prob: Any,
    path: Path,
    title: str,
    draw: Callable[[Any, np.ndarray, np.ndarray], str],
) -> Path:
    """One figure for a two-class curve: ``draw(ax, y, p)`` plots and returns the legend's
    corner; a one-class input is marked undefined instead of drawing a misleading curve."""
    y, p = check_binary_inputs(y_true, prob)
    fig, ax = new_figure()
    ax.set_title(title)
    if y.min() == y.max():
        mark_undefined(ax, ONE_CLASS)
    else:
        ax.legend(loc=draw(ax, y, p), fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_roc(
    y_true: Any,
    prob: Any,
    path: Path,
    *,
    operating_point: float | None = None,
    title: str = "ROC curve",
) -> Path:
    """ROC curve with AUROC in the legend and, if given, the threshold's (FPR, TPR) marked."""

    def draw(ax: Any, y: np.ndarray, p: np.ndarray) -> str:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=2, label=f"AUROC = {auc(fpr, tpr):.3f}")
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
        if operating_point is not None:
            x, t, _ = _rates_at(y, p, operating_point)
            ax.plot(
                [x],
                [t],
                "o",
                ms=8,
                color=OPERATING_POINT_COLOR,
                label=f"threshold {operating_point:.3g} (FPR {x:.2f}, TPR {t:.2f})",
            )
        ax.set(
            xlabel="False positive rate (1 - specificity)",
            ylabel="True positive rate (sensitivity)",
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        return "lower right"

    return _binary_curve(y_true, prob, path, title, draw)


def plot_pr(
    y_true: Any,
    prob: Any,
    path: Path,
    *,
    operating_point: float | None = None,
    title: str = "Precision-recall curve",
) -> Path:
    """Precision-recall curve with AP in the legend, prevalence as the chance line."""

    def draw(ax: Any, y: np.ndarray, p: np.ndarray) -> str:
        precision, recall, _ = precision_recall_curve(y, p)
        ax.step(
            recall, precision, where="post", lw=2, label=f"AP = {average_precision_score(y, p):.3f}"
        )
        prevalence = float(y.mean())
        ax.axhline(prevalence, ls="--", lw=1, color="grey", label=f"prevalence {prevalence:.2f}")
        if operating_point is not None:
            _, r, pr = _rates_at(y, p, operating_point)
            if not math.isnan(pr):
                ax.plot(
                    [r],
                    [pr],
                    "o",
                    ms=8,
                    color=OPERATING_POINT_COLOR,
                    label=f"threshold {operating_point:.3g} (recall {r:.2f}, precision {pr:.2f})",
                )
        ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", xlim=(0, 1), ylim=(0, 1.02))
        return "lower left"

    return _binary_curve(y_true, prob, path, title, draw)


def plot_confusion(
    cm: Any, class_names: Sequence[str], path: Path, *, title: str = "Confusion matrix"
) -> Path:
    """Confusion matrix (rows = truth, columns = prediction) with counts written in the cells."""
    counts = np.asarray(cm)
    if (
        counts.ndim != 2
        or counts.shape[0] != counts.shape[1]
        or counts.shape[0] != len(class_names)
    ):
        raise ValueError(
            f"cm must be square with one row per class name, got shape {counts.shape} "
            f"and {len(class_names)} class names"
        )
    size = max(3.5, 1.0 + 0.8 * len(class_names))
    fig, ax = new_figure((size + 1.0, size))
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=[str(c) for c in class_names], rotation=30, ha="right")
    ax.set_yticks(ticks, labels=[str(c) for c in class_names])
    ax.set(xlabel="Predicted", ylabel="True", title=title)
    high = counts.max() / 2 if counts.size and counts.max() > 0 else 0
    for (i, j), value in np.ndenumerate(counts):
        text = f"{value:g}" if np.issubdtype(counts.dtype, np.floating) else str(value)
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            color="white" if value > high else "black",
            fontsize=11,
        )
    return save_figure(fig, path)


def plot_reliability(
    curve: BinnedCalibration,
    path: Path,
    *,
    ece: float | None = None,
    title: str = "Reliability",
) -> Path:
    """Reliability diagram (fraction positive per probability bin), the ECE in the title if given.

    Calibration is defined on one class too (all fractions are 0 or 1), so nothing is special
    cased; the histogram underneath shows where the predictions lie.
    """
    centers, counts = np.asarray(curve.bin_centers), np.asarray(curve.counts)
    mean_predicted, fraction = np.asarray(curve.mean_predicted), np.asarray(curve.fraction_positive)
    n_bins = centers.size
    if n_bins == 0 or not all(a.shape == centers.shape for a in (counts, mean_predicted, fraction)):
        raise ValueError(
            "a reliability curve needs bins with one center, mean, fraction and count each, got "
            "shapes "
            f"{centers.shape}, {mean_predicted.shape}, {fraction.shape}, {counts.shape}"
        )
    fig, grid = new_grid((5.0, 5.5), 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax, hist = grid[:, 0]
    width = 1.0 / n_bins
    filled = counts > 0
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="perfect calibration")
    ax.bar(
        centers[filled],
        fraction[filled],
        width=width * 0.9,
        alpha=0.35,
        edgecolor="tab:blue",
        label="fraction positive",
    )
    ax.plot(
        mean_predicted[filled],
        fraction[filled],
        "o-",
        color="tab:blue",
        label="mean predicted vs observed",
    )
    heading = (
        f"{title} ({n_bins} bins)" if ece is None else f"{title} (ECE = {ece:.3f}, {n_bins} bins)"
    )
    ax.set(ylabel="Fraction positive", xlim=(0, 1), ylim=(0, 1.02), title=heading)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    hist.bar(centers, counts, width=width * 0.9, color="grey")
    hist.set(xlabel="Predicted probability", ylabel="Count")
    return save_figure(fig, path)


def plot_curves(
    history: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    path: Path,
    *,
    title: str = "Training curves",
) -> Path:
    """Training curves: epoch against each key; losses and other metrics on separate panels.

    The x value is ``row["epoch"]`` when present, else the row's position (1-based); missing
    or ``None`` values are skipped, so a metric logged every few epochs still plots.
    """
    groups = [[k for k in keys if "loss" in k], [k for k in keys if "loss" not in k]]
    groups = [g for g in groups if g] or [[]]
    fig, grid = new_grid((6.0, 3.2 * len(groups)), len(groups), 1, sharex=True)
    axes = grid[:, 0]
    axes[0].set_title(title)
    drawn = False
    for ax, group in zip(axes, groups, strict=True):
        for key in group:
            points = [
                (row.get("epoch", i + 1), row[key])
                for i, row in enumerate(history)
                if is_number(row.get(key)) and math.isfinite(row[key])
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, "o-", ms=3, label=key)
                drawn = True
        if ax.lines:
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        ax.set_ylabel("loss" if group and "loss" in group[0] else "value")
    axes[-1].set_xlabel("epoch")
    if not drawn:
        mark_undefined(axes[0], "no values to plot")
    return save_figure(fig, path)
