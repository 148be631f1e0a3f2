"""Bootstrap confidence intervals of the classification metrics.

:func:`bootstrap_ci` resamples any metric function; :func:`metrics_with_ci` intervals every
headline metric of :func:`~fracdet.cls.metrics.binary_metrics` at once. Its replicates use
vectorised equivalents of the scikit-learn metrics (checked against scikit-learn in the
tests), because a thousand scikit-learn calls per metric are slow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from scipy.stats import rankdata

from fracdet.cls.metrics import binary_metrics, quiet_sklearn
from fracdet.confusion import check_binary_inputs, confusion_counts
from fracdet.resample import bootstrap_indices

__all__ = ["bootstrap_ci", "metrics_with_ci"]

logger = logging.getLogger(__name__)

# Bootstrap replicates are processed in chunks of about this many (replicate, sample) cells.
_CHUNK_CELLS = 2_000_000
_CI_METRICS = (
    "auroc",
    "average_precision",
    "accuracy",
    "balanced_accuracy",
    "f1",
    "sensitivity",
    "specificity",
)


def _resample_chunks(
    y: np.ndarray, *, n_boot: int, seed: int, stratified: bool
) -> Iterator[np.ndarray]:
    """Index matrices ``(chunk, N)`` of bootstrap replicates, ``n_boot`` rows in all.

    Stratified replicates draw each class's members from that class only, so every replicate
    keeps the original class counts (AUROC stays defined). Chunking bounds memory; the chunk
    size depends only on ``(n_boot, N)``, so a seed always gives the same replicates.
    """
    members = [np.flatnonzero(y == c) for c in np.unique(y)] if stratified else None
    return bootstrap_indices(y.size, n_boot, seed=seed, chunk_cells=_CHUNK_CELLS, strata=members)


def _check_bootstrap(y: np.ndarray, prob: np.ndarray, n_boot: int, alpha: float) -> None:
    if y.ndim != 1 or prob.ndim not in (1, 2) or prob.shape[0] != y.shape[0]:
        raise ValueError(
            "y_true must be (N,) and prob (N,) or (N, C) with the same N, got shapes "
            f"{y.shape} and {prob.shape}"
        )
    if y.size == 0:
        raise ValueError("no predictions")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _percentile_interval(values: np.ndarray, alpha: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def bootstrap_ci(
    y_true: Any,
    prob: Any,
    metric: Callable[[np.ndarray, np.ndarray], float | None],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval ``(lo, hi)`` of ``metric(y, prob)``.

    Replicates where the metric is undefined (``None``, nan, or a ``ValueError`` such as
    scikit-learn's "only one class present") are dropped; ``None`` when none is left.
    ``prob`` may be ``(N,)`` or ``(N, C)``; rows are resampled together with ``y_true``.
    """
    y = np.asarray(y_true)
    p = np.asarray(prob)
    _check_bootstrap(y, p, n_boot, alpha)
    values = np.full(n_boot, np.nan)
    failures: list[str] = []
    i = 0
    with quiet_sklearn():
        for chunk in _resample_chunks(y, n_boot=n_boot, seed=seed, stratified=stratified):
            for rows in chunk:
                try:
                    value = metric(y[rows], p[rows])
                except ValueError as exc:
                    failures.append(str(exc))
                    value = None
                if value is not None:
                    values[i] = float(value)
                i += 1
    if failures:
        logger.warning(
            "bootstrap: the metric raised ValueError on %d of %d replicates (first: %s)",
            len(failures),
            n_boot,
            failures[0],
        )
    return _percentile_interval(values, alpha)


def _average_precision_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Row-wise ``average_precision_score`` (step-wise, ties grouped), nan without positives."""
    order = np.argsort(-p, axis=1, kind="stable")
    scores = np.take_along_axis(p, order, axis=1)
    tps = np.cumsum(np.take_along_axis(y, order, axis=1), axis=1)
    # A threshold sits at the last sample of each group of tied scores.
    at_threshold = np.ones_like(scores, dtype=bool)
    at_threshold[:, :-1] = scores[:, :-1] != scores[:, 1:]
    precision = tps / np.arange(1, y.shape[1] + 1)
    tps_seen = np.maximum.accumulate(np.where(at_threshold, tps, 0), axis=1)
    tps_before = np.zeros_like(tps)
    tps_before[:, 1:] = tps_seen[:, :-1]
    n_pos = tps[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(at_threshold * (tps - tps_before) * precision, axis=1) / n_pos


def _auroc_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Row-wise AUROC via the Mann-Whitney rank sum (ties count one half), nan with one class."""
    ranks = rankdata(p, axis=1)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.sum(ranks * y, axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _replicate_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """The :data:`_CI_METRICS` of each row of ``(replicates, N)`` label/probability matrices."""
    tp, fp, tn, fn = confusion_counts(y, p, threshold)
    with np.errstate(divide="ignore", invalid="ignore"):
        sensitivity = tp / (tp + fn)
        specificity = tn / (tn + fp)
        f1 = 2 * tp / (2 * tp + fp + fn)
    # balanced_accuracy_score averages the recall of the classes present.
    balanced = np.where(
        np.isnan(sensitivity),
        specificity,
        np.where(np.isnan(specificity), sensitivity, (sensitivity + specificity) / 2),
    )
    return {
        "auroc": _auroc_rows(y, p),
        "average_precision": _average_precision_rows(y, p),
        "accuracy": (tp + tn) / y.shape[1],
        "balanced_accuracy": balanced,
        "f1": f1,
        "sensitivity": sensitivity,
        "specificity": specificity,
    }


def metrics_with_ci(
    y_true: Any, prob: Any, *, threshold: float, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """:func:`binary_metrics` plus ``ci95``: stratified percentile 95 % intervals.

    Intervals cover AUROC, average precision, accuracy, balanced accuracy, F1, sensitivity and
    specificity at the given (frozen) threshold, each ``[lo, hi]`` or ``None``. All metrics
    share the same replicates, which are those :func:`bootstrap_ci` draws with the same seed.
    """
    y, p = check_binary_inputs(y_true, prob)
    out = binary_metrics(y, p, threshold=threshold)
    _check_bootstrap(y, p, n_boot, 0.05)
    replicates: dict[str, list[np.ndarray]] = {name: [] for name in _CI_METRICS}
    for rows in _resample_chunks(y, n_boot=n_boot, seed=seed, stratified=True):
        for name, values in _replicate_metrics(y[rows], p[rows], threshold).items():
            replicates[name].append(values)
    ci95: dict[str, list[float] | None] = {}
    for name in _CI_METRICS:
        interval = _percentile_interval(np.concatenate(replicates[name]), 0.05)
        ci95[name] = None if interval is None else list(interval)
    out["ci95"] = ci95
    out["ci_method"] = f"stratified percentile bootstrap, {n_boot} replicates, seed {seed}"
    return out
