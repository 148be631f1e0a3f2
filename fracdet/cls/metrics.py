"""Evaluation metrics of the classification track: pure functions over label/probability arrays.

Point estimates come from scikit-learn so that our numbers match what a reviewer recomputes;
only the bootstrap replicates of :func:`metrics_with_ci` use vectorized equivalents (checked
against scikit-learn in the tests), because a thousand scikit-learn calls per metric are slow.

Conventions: labels are 0/1 with 1 = fractured; a sample is predicted positive when
``prob >= threshold`` (scikit-learn's convention for curve thresholds); a metric that is
undefined on the data (a ratio with a zero denominator, AUROC with one class) is ``None``,
never a crash and never a warning flood.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logsumexp, softmax
from scipy.stats import rankdata
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

from fracdet.confusion import confusion_at

__all__ = [
    "THRESHOLD_METHODS",
    "ReliabilityCurve",
    "check_binary_inputs",
    "tune_threshold",
    "binary_metrics",
    "multiclass_metrics",
    "reliability_curve",
    "expected_calibration_error",
    "fit_temperature",
    "apply_temperature",
    "bootstrap_ci",
    "metrics_with_ci",
]

logger = logging.getLogger(__name__)

THRESHOLD_METHODS = ("f1", "youden", "sensitivity", "specificity")
# Rates such as 9/10 are compared with targets such as 0.9; without a tolerance 1 - 0.9 < 0.1.
_EPS = 1e-9
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


# --------------------------------------------------------------------------- helpers


@contextmanager
def _quiet_sklearn() -> Iterator[None]:
    """Undefined metrics are reported as ``None`` by us; scikit-learn's warnings add nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message=".*ill-defined.*")
        warnings.filterwarnings("ignore", message="A single label was found")
        yield


def check_binary_inputs(y_true: Any, prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(labels int64 (N,), probabilities float64 (N,))``: 0/1 labels, probabilities
    in [0, 1], same length, not empty; shared so that figures reject what metrics reject."""
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1 or y.shape != p.shape:
        raise ValueError(
            f"y_true and prob must be 1-D arrays of the same length, got shapes {y.shape} and {p.shape}"
        )
    if y.size == 0:
        raise ValueError("no predictions")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold 0/1 labels, found {np.unique(y)[:6].tolist()}")
    if not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(
            f"prob must hold finite probabilities in [0, 1], found range [{np.nanmin(p)}, {np.nanmax(p)}]"
        )
    return y.astype(np.int64), p


def _num(value: Any) -> float | None:
    """A plain float, or ``None`` for nan (scikit-learn's ``zero_division=np.nan``)."""
    value = float(value)
    return None if np.isnan(value) else value


def _one_class_note(y: np.ndarray) -> str | None:
    if y.min() == y.max():
        which = "positive" if y[0] == 1 else "negative"
        return f"AUROC undefined: only one class ({which}) in this split"
    return None


def _check_n_bins(n_bins: int) -> None:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


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
    with _quiet_sklearn():
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
            f"y_true must be (N,) and probs (N, C) with the same N, got shapes {y.shape} and {scores.shape}"
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
    with _quiet_sklearn():
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


# --------------------------------------------------------------------------- calibration


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


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """Calibrated probabilities: ``sigmoid(z / T)`` for ``(N,)``, ``softmax(z / T)`` for ``(N, C)``."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        return expit(z / temperature)
    if z.ndim == 2:
        return softmax(z / temperature, axis=1)
    raise ValueError(f"logits must be (N,) or (N, C), got shape {z.shape}")


# --------------------------------------------------------------------------- bootstrap


def _resample_chunks(
    y: np.ndarray, *, n_boot: int, seed: int, stratified: bool
) -> Iterator[np.ndarray]:
    """Index matrices ``(chunk, N)`` of bootstrap replicates, ``n_boot`` rows in all.

    Stratified replicates draw each class's members from that class only, so every replicate
    keeps the original class counts (AUROC stays defined). Chunking bounds memory; the chunk
    size depends only on ``(n_boot, N)``, so a seed always gives the same replicates.
    """
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in np.unique(y)] if stratified else None
    chunk = max(1, min(n_boot, _CHUNK_CELLS // y.size))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        if members is None:
            yield rng.integers(0, y.size, size=(rows, y.size))
        else:
            yield np.concatenate(
                [idx[rng.integers(0, idx.size, size=(rows, idx.size))] for idx in members], axis=1
            )


def _check_bootstrap(y: np.ndarray, prob: np.ndarray, n_boot: int, alpha: float) -> None:
    if y.ndim != 1 or prob.ndim not in (1, 2) or prob.shape[0] != y.shape[0]:
        raise ValueError(
            f"y_true must be (N,) and prob (N,) or (N, C) with the same N, got shapes {y.shape} and {prob.shape}"
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
    with _quiet_sklearn():
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
            len(failures), n_boot, failures[0],
        )  # fmt: skip
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
    positive = y == 1
    predicted = p >= threshold
    tp = np.sum(positive & predicted, axis=1)
    fn = np.sum(positive & ~predicted, axis=1)
    fp = np.sum(~positive & predicted, axis=1)
    tn = np.sum(~positive & ~predicted, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sensitivity = tp / (tp + fn)
        specificity = tn / (tn + fp)
        f1 = 2 * tp / (2 * tp + fp + fn)
    # balanced_accuracy_score averages the recall of the classes present.
    balanced = np.where(
        np.isnan(sensitivity), specificity,
        np.where(np.isnan(specificity), sensitivity, (sensitivity + specificity) / 2),
    )  # fmt: skip
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
