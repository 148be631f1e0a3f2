"""Classification metrics against hand-counted cases and scikit-learn as a second implementation."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fracdet.cls.metrics import (
    THRESHOLD_METHODS,
    binary_metrics,
    multiclass_metrics,
    tune_threshold,
)

# Hand case A. Threshold 0.5 predicts [0, 0, 0, 1, 1, 1]:
#   tn = samples 0, 1 -> 2; fp = sample 4 -> 1; fn = sample 2 -> 1; tp = samples 3, 5 -> 2.
# AUROC by counting (positive, negative) pairs, positives {.35, .8, .9}, negatives {.1, .4, .7}:
#   .35 beats .1 only -> 1; .8 beats all three -> 3; .9 beats all three -> 3; 7 of 9 pairs.
# AP: ranked .9(+) .8(+) .7 .4 .35(+) .1 -> precision at each positive 1/1, 2/2, 3/5 -> 2.6/3.
Y_A = np.array([0, 0, 1, 1, 0, 1])
P_A = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9])


@pytest.fixture
def propagate_fracdet_logs(monkeypatch):
    """setup_logging stops propagation to the root logger, where caplog listens."""
    monkeypatch.setattr(logging.getLogger("fracdet"), "propagate", True)


# --------------------------------------------------------------------------- binary metrics


def test_binary_metrics_hand_case():
    m = binary_metrics(Y_A, P_A, threshold=0.5)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["n"] == 6 and m["n_positive"] == 3
    assert m["auroc"] == pytest.approx(7 / 9)
    assert m["average_precision"] == pytest.approx(2.6 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    for key in ("balanced_accuracy", "f1", "sensitivity", "specificity", "ppv", "npv"):
        assert m[key] == pytest.approx(2 / 3), key
    # No false positive only above .7, where TPR is 2/3; with 3 negatives FPR <= .2 means 0.
    assert m["sens_at_spec_80"] == pytest.approx(2 / 3)
    assert m["sens_at_spec_90"] == pytest.approx(2 / 3)
    assert m["threshold"] == 0.5 and m["notes"] == []


def test_binary_metrics_threshold_is_inclusive_and_ties_count_half():
    # Positives {.5, .9}, negatives {.5, .2}: .5 vs .5 is a tie (1/2), the rest wins -> 3.5/4.
    m = binary_metrics([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], threshold=0.5)
    assert m["auroc"] == pytest.approx(0.875)
    # prob >= 0.5 is positive: both .5 samples are called positive.
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]


def test_binary_metrics_sensitivity_at_specificity():
    # 10 negatives .05, .15, ..., .95 and positives {.99, .97, .8, .6}.
    # FPR <= .1 allows one negative (.95) at or above the threshold: the best threshold is .95
    # -> positives .99, .97 -> TPR 2/4. FPR <= .2 also allows .85: threshold .8 -> TPR 3/4.
    negatives = np.arange(10) / 10 + 0.05
    positives = np.array([0.99, 0.97, 0.8, 0.6])
    y = np.r_[np.zeros(10, int), np.ones(4, int)]
    m = binary_metrics(y, np.r_[negatives, positives])
    assert m["sens_at_spec_90"] == pytest.approx(2 / 4)
    assert m["sens_at_spec_80"] == pytest.approx(3 / 4)


@pytest.mark.parametrize("label, which", [(1, "positive"), (0, "negative")])
def test_binary_metrics_single_class_has_no_auroc_and_no_warnings(label, which):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics([label] * 4, [0.2, 0.6, 0.7, 0.9])
    assert m["auroc"] is None and m["average_precision"] is None
    assert m["sens_at_spec_80"] is None and m["sens_at_spec_90"] is None
    assert m["notes"] == [f"AUROC undefined: only one class ({which}) in this split"]
    assert m["accuracy"] == pytest.approx(0.75 if label == 1 else 0.25)
    # The ratio whose denominator is empty is None rather than a made-up 0.
    assert m["specificity" if label == 1 else "sensitivity"] is None


def test_binary_metrics_no_predicted_positive_gives_none_ppv():
    m = binary_metrics([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], threshold=0.9)
    assert m["ppv"] is None and m["sensitivity"] == 0.0 and m["npv"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "y, p, match",
    [
        ([0, 1, 1], [0.1, 0.2], r"shapes \(3,\) and \(2,\)"),
        ([], [], "no predictions"),
        ([0, 2], [0.1, 0.2], "0/1 labels"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [0.1, np.nan], r"\[0, 1\]"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_binary_metrics_rejects_bad_input(y, p, match):
    with pytest.raises(ValueError, match=match):
        binary_metrics(y, p)


# --------------------------------------------------------------------------- thresholds

# Hand case B: negatives {.1, .3, .4, .9}, positives {.2, .6, .8}.
#   thr  TPR  FPR  J      F1 = 2tp / (2tp + fp + fn)
#   .9   0    1/4  -.25   0
#   .8   1/3  1/4  .083   2/5
#   .6   2/3  1/4  .417   4/6     <- Youden; F1 tie with .2, broken towards the higher threshold
#   .4   2/3  2/4  .167   4/7
#   .3   2/3  3/4  -.083  4/8
#   .2   1    3/4  .25    6/9
Y_B = np.array([0, 1, 0, 0, 1, 1, 0])
P_B = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 0.9])


def test_tune_threshold_youden_and_f1_hand_case():
    assert tune_threshold(Y_B, P_B, method="youden") == pytest.approx(0.6)
    assert tune_threshold(Y_B, P_B, method="f1") == pytest.approx(0.6)
    # Unique F1 optimum: y [0,0,1,1,1], p [.1,.5,.4,.7,.9]; at .4 tp=3, fp=1 -> 6/7 beats
    # .7 (4/5), .5 (4/6), .9 (2/4), .1 (6/8).
    assert tune_threshold([0, 0, 1, 1, 1], [0.1, 0.5, 0.4, 0.7, 0.9]) == pytest.approx(0.4)


@pytest.mark.parametrize(
    "method, target, expected",
    [
        ("sensitivity", 1.0, 0.2),  # highest threshold catching all positives
        ("sensitivity", 0.6, 0.6),
        ("sensitivity", 2 / 3, 0.6),  # exactly reachable target
        ("specificity", 0.75, 0.6),  # lowest threshold with at most one of four negatives above
        ("specificity", 0.5, 0.4),
        ("specificity", 1.0, 1.0),  # only the +inf threshold of roc_curve, clipped to 1
    ],
)
def test_tune_threshold_targets(method, target, expected):
    assert tune_threshold(Y_B, P_B, method=method, target=target) == pytest.approx(expected)


def test_tune_threshold_specificity_target_is_met_despite_float_rounding():
    y = np.r_[np.zeros(10, int), np.ones(2, int)]
    p = np.r_[np.arange(10) / 10 + 0.05, [0.97, 0.99]]
    threshold = tune_threshold(y, p, method="specificity", target=0.9)  # 1 - 0.9 != 0.1 in floats
    assert threshold == pytest.approx(0.95)
    assert binary_metrics(y, p, threshold=threshold)["specificity"] >= 0.9


def test_tune_threshold_result_is_a_probability():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.random(200)
    for method in THRESHOLD_METHODS:
        t = tune_threshold(y, p, method=method, target=0.8)
        assert isinstance(t, float) and 0.0 <= t <= 1.0


def test_tune_threshold_single_class_returns_half_and_warns(caplog, propagate_fracdet_logs):
    with caplog.at_level(logging.WARNING, logger="fracdet"):
        assert tune_threshold([1, 1, 1], [0.2, 0.5, 0.9], method="youden") == 0.5
    assert "only one class" in caplog.text


def test_tune_threshold_errors():
    with pytest.raises(ValueError, match="f1, youden, sensitivity, specificity"):
        tune_threshold(Y_B, P_B, method="best")
    with pytest.raises(ValueError, match="target"):
        tune_threshold(Y_B, P_B, method="sensitivity")
    with pytest.raises(ValueError, match="target"):
        tune_threshold(Y_B, P_B, method="specificity", target=1.5)


# --------------------------------------------------------------------------- multi-class

# y = [0, 1, 2, 1]; arg-max predictions [0, 1, 1, 1] -> cm [[1,0,0],[0,2,0],[0,1,0]].
# Recalls 1, 1, 0 -> balanced accuracy 2/3. F1: class 0 1; class 1 tp 2 fp 1 -> 4/5; class 2 0.
# One-vs-rest AUROC: class 0 1.0; class 1 positives {.7, .4} vs {.1, .5} -> 3/4;
# class 2 positive {.3} vs {.1, .2, .3} -> (1 + 1 + 1/2) / 3.
Y_M = np.array([0, 1, 2, 1])
P_M = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.2, 0.5, 0.3], [0.3, 0.4, 0.3]])


def test_multiclass_metrics_hand_case():
    m = multiclass_metrics(Y_M, P_M, class_names=["a", "b", "c"])
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 2, 0], [0, 1, 0]]
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((1 + 0.8 + 0) / 3)
    assert [m["per_class"][c]["auroc"] for c in "abc"] == pytest.approx([1.0, 0.75, 2.5 / 3])
    assert [m["per_class"][c]["support"] for c in "abc"] == [1, 2, 1]
    assert m["auroc_macro"] == pytest.approx((1.0 + 0.75 + 2.5 / 3) / 3)
    # Second implementations: scikit-learn's own one-vs-rest and pooled cells.
    assert m["auroc_macro"] == pytest.approx(roc_auc_score(Y_M, P_M, multi_class="ovr"))
    assert m["auroc_micro"] == pytest.approx(roc_auc_score(np.eye(3)[Y_M].ravel(), P_M.ravel()))
    assert m["notes"] == []


def test_multiclass_metrics_absent_class_has_none_auroc_and_note():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = multiclass_metrics([0, 1, 1, 0], P_M, class_names=["a", "b", "c"])
    assert m["per_class"]["c"]["auroc"] is None and m["per_class"]["c"]["support"] == 0
    assert any("'c'" in note and "absent" in note for note in m["notes"])
    defined = [m["per_class"][c]["auroc"] for c in "ab"]
    assert m["auroc_macro"] == pytest.approx(np.mean(defined))


def test_multiclass_metrics_two_classes():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    m = multiclass_metrics([0, 1, 1, 0], probs, class_names=["no", "yes"])
    assert m["auroc_micro"] == pytest.approx(1.0) and m["accuracy"] == 1.0


def test_multiclass_metrics_errors():
    with pytest.raises(ValueError, match="shapes"):
        multiclass_metrics([0, 1], P_M, class_names="abc")
    with pytest.raises(ValueError, match="class_names"):
        multiclass_metrics(Y_M, P_M, class_names=["a", "b"])
    with pytest.raises(ValueError, match="no predictions"):
        multiclass_metrics(np.array([], int), np.zeros((0, 3)), class_names="abc")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        multiclass_metrics([0, 1, 3, 1], P_M, class_names="abc")
