"""Calibration against hand-computed bins and scikit-learn's calibration_curve; temperature
scaling recovers a known temperature."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from fracdet.cls.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)


def test_ece_hand_case():
    # Two bins. [0, .5]: p .1, .2 -> mean .15, 1 of 2 positive -> gap .35.
    # (.5, 1]: p .8, .9, .9 -> mean .8667, 2 of 3 positive -> gap .2.  ECE = (2*.35 + 3*.2) / 5.
    y, p = [0, 1, 1, 0, 1], [0.1, 0.2, 0.8, 0.9, 0.9]
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.26)
    curve = reliability_curve(y, p, n_bins=2)
    assert curve.counts.tolist() == [2, 3]
    assert curve.bin_centers.tolist() == pytest.approx([0.25, 0.75])
    assert curve.mean_predicted.tolist() == pytest.approx([0.15, 2.6 / 3])
    assert curve.fraction_positive.tolist() == pytest.approx([0.5, 2 / 3])


def test_reliability_curve_matches_sklearn_bins():
    rng = np.random.default_rng(1)
    p = np.r_[rng.random(500), [0.0, 0.2, 0.4, 0.5, 1.0]]  # include exact bin edges
    y = (rng.random(p.size) < p).astype(int)
    curve = reliability_curve(y, p, n_bins=5)
    frac, mean = calibration_curve(y, p, n_bins=5, strategy="uniform")
    filled = curve.counts > 0
    assert curve.fraction_positive[filled] == pytest.approx(frac)
    assert curve.mean_predicted[filled] == pytest.approx(mean)
    assert curve.counts.sum() == p.size and np.isnan(curve.mean_predicted[~filled]).all()


def test_ece_small_when_calibrated_large_when_not():
    rng = np.random.default_rng(2)
    p = rng.random(20_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, p**3) > 0.1
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(y, p, n_bins=0)


def test_fit_temperature_recovers_binary_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 2.0, 20_000)
    y = (rng.random(true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(int)
    temperature = fit_temperature(true_logits * 3, y)
    assert temperature == pytest.approx(3.0, rel=0.1)
    calibrated = apply_temperature(true_logits * 3, temperature)
    raw = apply_temperature(true_logits * 3, 1.0)
    assert expected_calibration_error(y, calibrated) < expected_calibration_error(y, raw)


def test_fit_temperature_recovers_multiclass_temperature():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0.0, 1.5, (20_000, 4))
    probs = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    y = (probs.cumsum(axis=1) < rng.random((true_logits.shape[0], 1))).sum(axis=1)
    assert fit_temperature(true_logits * 3, y) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(true_logits / 2, y) == pytest.approx(0.5, rel=0.1)


def test_fit_temperature_is_stable_on_huge_logits():
    logits = np.array([800.0, -800.0, 900.0, -50.0])
    temperature = fit_temperature(logits, [1, 0, 0, 0])  # one confidently wrong sample
    assert np.isfinite(temperature) and temperature > 0


def test_apply_temperature_and_errors():
    assert apply_temperature(np.array([0.0, 2.0]), 2.0) == pytest.approx([0.5, 1 / (1 + np.e**-1)])
    soft = apply_temperature(np.array([[0.0, 0.0], [2.0, 0.0]]), 2.0)
    assert soft.sum(axis=1) == pytest.approx([1, 1]) and soft[1, 0] == pytest.approx(
        1 / (1 + np.e**-1)
    )
    with pytest.raises(ValueError, match="positive"):
        apply_temperature([0.0], 0.0)
    with pytest.raises(ValueError, match="shapes"):
        fit_temperature(np.zeros(3), [0, 1])
    with pytest.raises(ValueError, match="no predictions"):
        fit_temperature(np.zeros(0), [])
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(np.zeros((2, 3)), [0, 3])


def test_apply_temperature_defaults_to_raw_probabilities_and_keeps_empty_inputs():
    logits = np.array([-3.0, 0.0, 40.0])
    assert apply_temperature(logits) == pytest.approx(1 / (1 + np.exp(-logits)))
    assert apply_temperature(np.zeros(0)).shape == (0,)
    assert apply_temperature(np.zeros((0, 3))).shape == (0, 3)
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, C\)"):
        apply_temperature(np.zeros((2, 2, 2)))
