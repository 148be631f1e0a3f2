"""Confusion counts of a binary decision at a threshold, and the rates read from them.

Computed once here for every track and report: the classifier's metrics, the detector's
image-level test (best box score as the image score) and the operating point on ROC/PR
figures all call :func:`confusion_at`. Convention: positive (fractured) when
``score >= threshold``; a rate whose denominator is zero is ``None``, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Confusion", "confusion_at"]


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
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn, "sensitivity": self.sensitivity, "specificity": self.specificity}


def confusion_at(y_true: Any, scores: Any, threshold: float) -> Confusion:
    """Counts of ``scores >= threshold`` against 0/1 labels ``y_true`` (1 = fractured)."""
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    called = s >= threshold
    positive = y == 1
    return Confusion(
        tp=int(np.sum(called & positive)),
        fp=int(np.sum(called & ~positive)),
        tn=int(np.sum(~called & ~positive)),
        fn=int(np.sum(~called & positive)),
    )
