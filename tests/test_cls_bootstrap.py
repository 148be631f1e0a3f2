"""Bootstrap intervals: reproducible, stratified, and the vectorised replicates equal
scikit-learn on the very same replicates."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    recall_score,
    roc_auc_score,
)

from fracdet.cls.bootstrap import bootstrap_ci, metrics_with_ci
from fracdet.confusion import confusion_at, confusion_counts


def _separable_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0.0, 1.0)
    return y, p


def test_bootstrap_ci_contains_estimate_is_reproducible_and_shrinks():
    y, p = _separable_data(200, 0)
    ci = bootstrap_ci(y, p, roc_auc_score, n_boot=100, seed=1)
    assert ci is not None and ci[0] <= roc_auc_score(y, p) <= ci[1]
    assert bootstrap_ci(y, p, roc_auc_score, n_boot=100, seed=1) == ci
    assert bootstrap_ci(y, p, roc_auc_score, n_boot=100, seed=2) != ci
    y_big, p_big = _separable_data(2000, 0)
    ci_big = bootstrap_ci(y_big, p_big, roc_auc_score, n_boot=100, seed=1)
    assert ci_big[1] - ci_big[0] < 0.6 * (ci[1] - ci[0])


def test_bootstrap_ci_stratified_keeps_class_counts():
    y = np.array([0] * 9 + [1])
    p = np.linspace(0, 1, 10)
    assert bootstrap_ci(y, p, lambda yb, pb: float(yb.sum()), n_boot=50) == (1.0, 1.0)
    # Without strata some replicates have no positive: scikit-learn raises, they are dropped.
    ci = bootstrap_ci(y, p, roc_auc_score, n_boot=100, stratified=False)
    assert ci is not None and 0.0 <= ci[0] <= ci[1] <= 1.0


def test_bootstrap_ci_none_when_never_defined():
    assert bootstrap_ci([1, 1, 1], [0.1, 0.2, 0.3], lambda yb, pb: None, n_boot=20) is None
    assert bootstrap_ci([1, 1, 1], [0.1, 0.2, 0.3], lambda yb, pb: np.nan, n_boot=20) is None


def test_bootstrap_ci_accepts_multiclass_scores():
    ci = bootstrap_ci(
        np.array([0, 1, 2, 1]),
        np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.2, 0.5, 0.3], [0.3, 0.4, 0.3]]),
        lambda yb, pb: float(np.mean(pb.argmax(1) == yb)),
        n_boot=50,
    )
    assert ci is not None and 0.0 <= ci[0] <= 0.75 <= ci[1] <= 1.0


def test_bootstrap_ci_errors():
    with pytest.raises(ValueError, match="shapes"):
        bootstrap_ci([0, 1], [0.5], roc_auc_score)
    with pytest.raises(ValueError, match="no predictions"):
        bootstrap_ci([], [], roc_auc_score)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([0, 1], [0.1, 0.9], roc_auc_score, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([0, 1], [0.1, 0.9], roc_auc_score, alpha=1.0)


def test_metrics_with_ci_matches_bootstrap_ci_with_sklearn():
    # The fast vectorized replicates must equal scikit-learn on the very same replicates.
    y, p = _separable_data(150, 3)
    p = np.round(p, 2)  # ties, to exercise tie handling in AUROC and AP
    t = 0.45
    m = metrics_with_ci(y, p, threshold=t, n_boot=100, seed=7)
    assert set(m["ci95"]) == {
        "auroc",
        "average_precision",
        "accuracy",
        "balanced_accuracy",
        "f1",
        "sensitivity",
        "specificity",
    }
    references = {
        "auroc": roc_auc_score,
        "average_precision": average_precision_score,
        "balanced_accuracy": lambda yb, pb: balanced_accuracy_score(yb, pb >= t),
        "f1": lambda yb, pb: f1_score(yb, pb >= t),
        "sensitivity": lambda yb, pb: recall_score(yb, pb >= t),
    }
    for name, metric in references.items():
        expected = bootstrap_ci(y, p, metric, n_boot=100, seed=7)
        assert m["ci95"][name] == pytest.approx(list(expected), abs=1e-12), name
    for name, (lo, hi) in m["ci95"].items():
        assert lo <= m[name] <= hi, name
    assert metrics_with_ci(y, p, threshold=t, n_boot=100, seed=7) == m


def test_metrics_with_ci_single_class():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = metrics_with_ci([0, 0, 0, 0], [0.1, 0.2, 0.6, 0.3], threshold=0.5, n_boot=50)
    assert m["auroc"] is None and m["ci95"]["auroc"] is None
    assert m["ci95"]["sensitivity"] is None
    assert m["ci95"]["specificity"] is not None
    assert m["notes"]


def test_confusion_counts_row_wise_equals_confusion_at_per_row():
    # The replicate metrics count with confusion_counts on (R, N) matrices; each row must give
    # exactly what confusion_at gives for that row alone (threshold inclusive).
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, (30, 17))
    p = np.round(rng.random((30, 17)), 1)
    tp, fp, tn, fn = confusion_counts(y, p, 0.5)
    assert tp.shape == (30,)
    for r in range(30):
        c = confusion_at(y[r], p[r], 0.5)
        assert (tp[r], fp[r], tn[r], fn[r]) == (c.tp, c.fp, c.tn, c.fn)
    # Hand case: scores [.5, .2, .9, .5] against labels [1, 1, 0, 0] at 0.5.
    assert [
        int(v)
        for v in confusion_counts(np.array([1, 1, 0, 0]), np.array([0.5, 0.2, 0.9, 0.5]), 0.5)
    ] == [1, 2, 0, 1]


def test_confusion_at_rejects_different_lengths():
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        confusion_at([0, 1, 1], [0.2, 0.4], 0.5)
