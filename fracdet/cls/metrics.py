"""Evaluation metrics of the classification track: pure functions over label/probability arrays.

Point estimates come from scikit-learn so that our numbers match what a reviewer recomputes.
Calibration lives in :mod:`fracdet.cls.calibration`, confidence intervals in
:mod:`fracdet.cls.bootstrap`.

Conventions: labels are 0/1 with 1 = fractured; a sample is predicted positive when
``prob >= threshold`` (scikit-learn's convention for curve thresholds); a metric that is
undefined on the data (a ratio with a zero denominator, AUROC with one class) is ``None``,
never a crash and never a warning flood.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.preprocessing import label_binarize

from fracdet.confusion import check_binary_inputs, confusion_at

__all__ = [
    "THRESHOLD_METHODS",
    "quiet_sklearn",
    "tune_threshold",
    "binary_metrics",
    "multiclass_metrics",
]

logger = logging.getLogger(__name__)

THRESHOLD_METHODS = ("f1", "youden", "sensitivity", "specificity")
# Rates such as 9/10 are compared with targets such as 0.9; without a tolerance 1 - 0.9 < 0.1.
_EPS = 1e-9


# --------------------------------------------------------------------------- helpers


@contextmanager
def quiet_sklearn() -> Iterator[None]:
    """Undefined metrics are reported as ``None`` by us; scikit-learn's warnings add nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message=".*ill-defined.*")
        warnings.filterwarnings("ignore", message="A single label was found")
        yield


def _num(value: Any) -> float | None:
    """A plain float, or ``None`` for nan (scikit-learn's ``zero_division=np.nan``)."""
    value = float(value)
    return None if np.isnan(value) else value


def _one_class_note(y: np.ndarray) -> str | None:
    if y.min() == y.max():
        which = "positive" if y[0] == 1 else "negative"
        return f"AUROC undefined: only one class ({which}) in this split"
    return None


# --------------------------------------------------------------------------- threshold


def tune_threshold(
    y_true: Any, prob: Any, *, method: str = "f1", target: float | None = None
) -> float:
    """The decision threshold chosen on validation data, to be frozen before testing.

    ``f1`` maximizes F1 over the precision-recall curve, ``youden`` maximizes TPR - FPR over
    the ROC curve, ``sensitivity`` is the highest threshold reaching sensitivity >= target and
    ``specificity`` the lowest threshold keeping specificity >= target (the usual clinical
    operating points). Ties go to the higher threshold. With one class only there is nothing
    to tune: 0.5 is returned and a warning logged.
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(
            f"unknown threshold method {method!r}; valid methods: {', '.join(THRESHOLD_METHODS)}"
        )
    if method in ("sensitivity", "specificity") and (
        target is None or not 0.0 <= float(target) <= 1.0
    ):
        raise ValueError(f"method {method!r} needs a target in [0, 1], got {target!r}")
    y, p = check_binary_inputs(y_true, prob)
    if y.min() == y.max():
        logger.warning(
            "cannot tune the threshold: only one class (%s) in y_true; using 0.5",
            "positive" if y[0] == 1 else "negative",
        )
        return 0.5

    if method == "f1":
        precision, recall, thresholds = precision_recall_curve(y, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall), nan=0.0)
        f1 = f1[:-1]  # the final (recall 0, precision 1) point has no threshold
        best = len(f1) - 1 - int(np.argmax(f1[::-1]))  # thresholds ascend: last max = highest
        chosen = thresholds[best]
    else:
        # drop_intermediate=False: every distinct score is a candidate, so targets are exact.
        fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
        if method == "youden":
            chosen = thresholds[int(np.argmax(tpr - fpr))]  # thresholds descend: first = highest
        elif method == "sensitivity":
            chosen = thresholds[np.flatnonzero(tpr >= float(target) - _EPS)[0]]
        else:
            chosen = thresholds[np.flatnonzero(1.0 - fpr >= float(target) - _EPS)[-1]]
    # roc_curve's first threshold is +inf (nothing predicted positive).
    return float(np.clip(chosen, 0.0, 1.0))


# --------------------------------------------------------------------------- binary metrics


def _sens_at_spec(fpr: np.ndarray, tpr: np.ndarray, specificity: float) -> float:
    return float(tpr[fpr <= 1.0 - specificity + _EPS].max())


def binary_metrics(y_true: Any, prob: Any, *, threshold: float = 0.5) -> dict[str, Any]:
    """Headline numbers of a binary classifier at a fixed threshold, JSON-ready.

    Threshold-free metrics (AUROC, average precision, sensitivity at 80 % / 90 % specificity)
    are ``None`` when the split holds one class, with the reason in ``notes``; ratios with a
    zero denominator (e.g. PPV with no predicted positive) are ``None`` as well.
    """
    y, p = check_binary_inputs(y_true, prob)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    pred = (p >= threshold).astype(np.int64)
    counts = confusion_at(y, p, threshold)
    notes: list[str] = []
    with quiet_sklearn():
        out: dict[str, Any] = {
            "n": int(y.size),
            "n_positive": int(y.sum()),
            "auroc": None,
            "average_precision": None,
            "accuracy": float(accuracy_score(y, pred)),
            "balanced_accuracy": _num(balanced_accuracy_score(y, pred)),
            "f1": _num(f1_score(y, pred, labels=[0, 1], zero_division=np.nan)),
            "sensitivity": counts.sensitivity,
            "specificity": counts.specificity,
            "ppv": counts.ppv,
            "npv": counts.npv,
            "sens_at_spec_80": None,
            "sens_at_spec_90": None,
            "threshold": float(threshold),
            "confusion_matrix": counts.matrix(),
            "notes": notes,
        }
        note = _one_class_note(y)
        if note is None:
            fpr, tpr, _ = roc_curve(y, p)
            out["auroc"] = float(roc_auc_score(y, p))
            out["average_precision"] = float(average_precision_score(y, p))
            out["sens_at_spec_80"] = _sens_at_spec(fpr, tpr, 0.8)
            out["sens_at_spec_90"] = _sens_at_spec(fpr, tpr, 0.9)
        else:
            notes.append(note)
    return out


# --------------------------------------------------------------------------- multi-class


def multiclass_metrics(y_true: Any, probs: Any, *, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1 and one-vs-rest AUROC of an ``(N, C)`` score matrix.

    The prediction is the arg-max class. ``auroc_macro`` averages the per-class one-vs-rest
    AUROCs that are defined (a class absent from ``y_true``, or the only class present, has
    ``None`` and a note); ``auroc_micro`` pools every (sample, class) cell.
    """
    y = np.asarray(y_true)
    scores = np.asarray(probs, dtype=np.float64)
    names = [str(name) for name in class_names]
    if y.ndim != 1 or scores.ndim != 2 or scores.shape[0] != y.shape[0]:
        raise ValueError(
            f"y_true must be (N,) and probs (N, C) with the same N, got shapes {y.shape} and "
            f"{scores.shape}"
        )
    if y.size == 0:
        raise ValueError("no predictions")
    n_classes = scores.shape[1]
    if n_classes < 2 or len(names) != n_classes:
        raise ValueError(
            f"probs has {n_classes} columns and class_names {len(names)} entries; "
            "they must agree and be at least 2"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"y_true must hold integer class indices in [0, {n_classes})")
    if not np.isfinite(scores).all():
        raise ValueError("probs holds non-finite values")

    labels = list(range(n_classes))
    pred = scores.argmax(axis=1)
    notes: list[str] = []
    per_class: dict[str, dict[str, Any]] = {}
    with quiet_sklearn():
        f1_per_class = f1_score(y, pred, labels=labels, average=None, zero_division=np.nan)
        defined_aurocs = []
        for k, name in enumerate(names):
            positive = (y == k).astype(np.int64)
            support = int(positive.sum())
            auroc = ap = None
            if support > 0:
                ap = float(average_precision_score(positive, scores[:, k]))
            if 0 < support < y.size:
                auroc = float(roc_auc_score(positive, scores[:, k]))
                defined_aurocs.append(auroc)
            elif support == 0:
                notes.append(f"AUROC undefined for class {name!r}: absent from y_true")
            else:
                notes.append(f"AUROC undefined for class {name!r}: every sample belongs to it")
            per_class[name] = {
                "auroc": auroc,
                "average_precision": ap,
                "f1": _num(f1_per_class[k]),
                "support": support,
            }
        onehot = label_binarize(y, classes=labels)
        if n_classes == 2:  # label_binarize returns one column for two classes
            onehot = np.hstack([1 - onehot, onehot])
        out = {
            "n": int(y.size),
            "accuracy": float(accuracy_score(y, pred)),
            "balanced_accuracy": _num(balanced_accuracy_score(y, pred)),
            "macro_f1": _num(
                f1_score(y, pred, labels=labels, average="macro", zero_division=np.nan)
            ),
            "auroc_macro": float(np.mean(defined_aurocs)) if defined_aurocs else None,
            "auroc_micro": float(roc_auc_score(onehot, scores, average="micro")),
            "per_class": per_class,
            "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
            "class_names": names,
            "notes": notes,
        }
    return out
