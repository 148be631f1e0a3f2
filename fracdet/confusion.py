"""Confusion counts of a binary decision at a threshold, and the rates read from them.

Computed once here for every track and report: the classifier's metrics, the detector's
image-level test (best box score as the image score) and the operating point on ROC/PR
figures all call :func:`confusion_at` (bootstrap replicates call :func:`confusion_counts`,
its row-wise form). Convention: positive (fractured) when ``score >= threshold``; a rate whose
denominator is zero is ``None``, never a crash. :func:`check_binary_inputs` is the one check of
label/probability pairs, shared by the metrics and the figures that draw them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Confusion", "check_binary_inputs", "confusion_at", "confusion_counts"]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class Confusion:
    """True/false positives/negatives of one threshold."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n_positive(self) -> int:
        return self.tp + self.fn

    @property
    def n_negative(self) -> int:
        return self.tn + self.fp

    @property
    def sensitivity(self) -> float | None:
        """True positive rate (recall)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float | None:
        """True negative rate."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float | None:
        """Positive predictive value (precision)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float | None:
        """Negative predictive value."""
        return _ratio(self.tn, self.tn + self.fn)

    @property
    def fpr(self) -> float | None:
        """False positive rate, 1 - specificity."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn)

    def matrix(self) -> list[list[int]]:
        """scikit-learn's layout: rows true (0, 1), columns predicted (0, 1)."""
        return [[self.tn, self.fp], [self.fn, self.tp]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
        }


def check_binary_inputs(y_true: Any, prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(labels int64 (N,), probabilities float64 (N,))``: 0/1 labels, probabilities
    in [0, 1], same length, not empty; shared so that figures reject what metrics reject."""
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1 or y.shape != p.shape:
        raise ValueError(
            "y_true and prob must be 1-D arrays of the same length, "
            f"got shapes {y.shape} and {p.shape}"
        )
    if y.size == 0:
        raise ValueError("no predictions")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold 0/1 labels, found {np.unique(y)[:6].tolist()}")
    if not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(
            "prob must hold finite probabilities in [0, 1], "
            f"found range [{np.nanmin(p)}, {np.nanmax(p)}]"
        )
    return y.astype(np.int64), p


def confusion_counts(
    y_true: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(tp, fp, tn, fn)`` counted along the last axis of same-shape label/score arrays.

    ``(N,)`` inputs give 0-d counts; ``(R, N)`` inputs (R bootstrap replicates) give ``(R,)``
    counts in one vectorised pass instead of R calls of :func:`confusion_at`.
    """
    called = np.asarray(scores) >= threshold
    positive = np.asarray(y_true) == 1
    return (
        np.sum(called & positive, axis=-1),
        np.sum(called & ~positive, axis=-1),
        np.sum(~called & ~positive, axis=-1),
        np.sum(~called & positive, axis=-1),
    )


def confusion_at(y_true: Any, scores: Any, threshold: float) -> Confusion:
    """Counts of ``scores >= threshold`` against 0/1 labels ``y_true`` (1 = fractured)."""
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    tp, fp, tn, fn = confusion_counts(y, s, threshold)
    return Confusion(tp=int(tp), fp=int(fp), tn=int(tn), fn=int(fn))
