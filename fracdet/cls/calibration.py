"""Calibration of the classification track: reliability curve, ECE and temperature scaling.

Temperature scaling (Guo et al. 2017) is fitted on validation logits at the end of training
and stored in the checkpoint; :func:`apply_temperature` is the one place where logits become
probabilities, for training, eval-cls, predict and the audit alike.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logsumexp, softmax

from fracdet.confusion import check_binary_inputs

__all__ = [
    "ReliabilityCurve",
    "reliability_curve",
    "expected_calibration_error",
    "fit_temperature",
    "apply_temperature",
]

logger = logging.getLogger(__name__)


def _check_n_bins(n_bins: int) -> None:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


class ReliabilityCurve(NamedTuple):
    """Per-bin statistics of a reliability diagram; empty bins hold ``nan`` means."""

    bin_centers: np.ndarray
    mean_predicted: np.ndarray
    fraction_positive: np.ndarray
    counts: np.ndarray


def reliability_curve(y_true: Any, prob: Any, *, n_bins: int = 15) -> ReliabilityCurve:
    """Equal-width bins over the positive-class probability, with their counts.

    Bins are ``[0, 1/n]``, ``(1/n, 2/n]``, ... exactly as in
    ``sklearn.calibration.calibration_curve(strategy="uniform")``, which however drops the
    counts that the expected calibration error needs.
    """
    _check_n_bins(n_bins)
    y, p = check_binary_inputs(y_true, prob)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(bin_ids, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_predicted = np.bincount(bin_ids, weights=p, minlength=n_bins) / counts
        fraction_positive = np.bincount(bin_ids, weights=y, minlength=n_bins) / counts
    return ReliabilityCurve((edges[:-1] + edges[1:]) / 2, mean_predicted, fraction_positive, counts)


def expected_calibration_error(y_true: Any, prob: Any, *, n_bins: int = 15) -> float:
    """ECE of the binary reliability diagram: ``sum_b n_b / N * |frac_positive_b - mean_prob_b|``.

    This is the binary formulation on the positive-class probability (what the reliability
    plot shows), not the top-label "confidence vs accuracy" variant of Guo et al. (2017); the
    two differ because a bin of ``p = 0.3`` also counts as confidence 0.7 in the latter.
    """
    curve = reliability_curve(y_true, prob, n_bins=n_bins)
    filled = curve.counts > 0
    gaps = np.abs(curve.fraction_positive[filled] - curve.mean_predicted[filled])
    return float(np.sum(curve.counts[filled] * gaps) / curve.counts.sum())


def _logits_labels(logits: Any, y_true: Any) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true)
    if z.ndim not in (1, 2) or y.ndim != 1 or z.shape[0] != y.shape[0]:
        raise ValueError(
            f"logits must be (N,) (binary) or (N, C) (multi-class) with y_true (N,), "
            f"got shapes {z.shape} and {y.shape}"
        )
    if y.size == 0:
        raise ValueError("no predictions")
    if z.ndim == 2 and z.shape[1] < 2:
        raise ValueError(f"multi-class logits need at least 2 columns, got shape {z.shape}")
    n_classes = 2 if z.ndim == 1 else z.shape[1]
    if not np.isin(y, np.arange(n_classes)).all():
        raise ValueError(f"y_true must hold class indices in [0, {n_classes})")
    if not np.isfinite(z).all():
        raise ValueError("logits hold non-finite values")
    return z, y.astype(np.int64)


def fit_temperature(logits: Any, y_true: Any) -> float:
    """Temperature ``T > 0`` minimizing the validation NLL of ``logits / T`` (Guo et al. 2017).

    Binary logits have shape ``(N,)`` (sigmoid), multi-class ``(N, C)`` (softmax). The search
    runs over ``log T`` in ``[-3, 3]``; a result on the bound is logged, since it usually means
    a degenerate validation set (e.g. one class, perfectly separated).
    """
    z, y = _logits_labels(logits, y_true)
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        if s.ndim == 1:  # -log sigmoid(s) for y=1, -log(1 - sigmoid(s)) for y=0, stably
            return float(np.mean(np.logaddexp(0.0, s) - y * s))
        return float(np.mean(logsumexp(s, axis=1) - s[rows, y]))

    bound = 3.0
    result = minimize_scalar(nll, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-6})
    if abs(result.x) > bound - 1e-3:
        logger.warning(
            "temperature %.3g is at the search bound; the validation set may be degenerate",
            np.exp(result.x),
        )
    return float(np.exp(result.x))


def apply_temperature(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of logits: ``sigmoid(z / T)`` for ``(N,)``, ``softmax(z / T)`` for ``(N, C)``.

    ``T = 1`` gives the model's raw probabilities; the checkpoint's fitted ``T`` the
    calibrated ones. Computed in float64 with scipy's stable ``expit``/``softmax``.
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        return expit(z / temperature)
    if z.ndim == 2:
        return softmax(z / temperature, axis=1)
    raise ValueError(f"logits must be (N,) or (N, C), got shape {z.shape}")
