"""Statistics between models: paired Wilcoxon and bootstrap CIs, Wilson intervals, hand values
and simulations.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from fracdet.audit.stats import bootstrap_mean_ci, paired_comparison, proportion_ci

# Hollander & Wolfe's paired differences, the example in scipy's wilcoxon documentation:
# the negative ones, -48 and -67, have ranks 10 and 14, so W = 24; exact two-sided p = 0.04126.
HOLLANDER_WOLFE = np.array(
    [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float
)


def test_wilcoxon_p_is_scipys_on_a_known_case():
    b = np.linspace(100.0, 200.0, HOLLANDER_WOLFE.size)
    result = paired_comparison(b + HOLLANDER_WOLFE, b)
    assert result["n"] == 15
    assert result["wilcoxon_p"] == pytest.approx(scipy.stats.wilcoxon(HOLLANDER_WOLFE).pvalue)
    assert result["wilcoxon_p"] == pytest.approx(0.04126, abs=1e-5)
    assert result["mean_diff"] == pytest.approx(HOLLANDER_WOLFE.mean())
    assert result["mean_a"] - result["mean_b"] == pytest.approx(result["mean_diff"])
    assert result["note"] is None


def test_a_clear_shift_is_significant_and_its_ci_excludes_zero():
    rng = np.random.default_rng(0)
    b = rng.random(40)
    a = b + 0.1 + rng.normal(0, 0.02, 40)
    result = paired_comparison(a, b)
    assert result["wilcoxon_p"] < 0.01
    assert 0 < result["ci_low"] < result["mean_diff"] < result["ci_high"]
    # Swapping the models flips the sign, not the test.
    swapped = paired_comparison(b, a)
    assert swapped["mean_diff"] == pytest.approx(-result["mean_diff"])
    assert swapped["ci_high"] < 0
    assert swapped["wilcoxon_p"] == pytest.approx(result["wilcoxon_p"])


def test_identical_models_have_no_difference_and_no_test():
    values = [0.2, 0.5, 0.9, 0.4]
    result = paired_comparison(values, values)
    assert result["mean_diff"] == 0.0
    assert (result["ci_low"], result["ci_high"]) == (0.0, 0.0)
    assert result["wilcoxon_p"] is None
    assert "all differences are zero" in result["note"]


def test_nan_pairs_are_dropped_and_counted():
    # Pairs kept: (1, 0) and (4, 2) -> mean_a 2.5, mean_b 1.0, mean_diff 1.5.
    result = paired_comparison([1.0, np.nan, 3.0, 4.0], [0.0, 1.0, np.nan, 2.0])
    assert result["n"] == 2
    assert (result["mean_a"], result["mean_b"], result["mean_diff"]) == (2.5, 1.0, 1.5)
    assert "2 pair(s) with NaN dropped" in result["note"]
    # Differences 1 and 2: every resampled mean lies in [1, 2].
    assert 1.0 <= result["ci_low"] <= result["ci_high"] <= 2.0


def test_too_few_pairs_give_none_with_a_note():
    one = paired_comparison([0.7], [0.2])
    assert one["n"] == 1 and one["mean_diff"] == pytest.approx(0.5)
    assert one["ci_low"] is None and one["ci_high"] is None and one["wilcoxon_p"] is None
    assert "1 pair(s): no CI or test" in one["note"]
    none = paired_comparison([np.nan], [0.2])
    assert none["n"] == 0 and none["mean_a"] is None and none["mean_diff"] is None
    assert "1 pair(s) with NaN dropped" in none["note"] and "0 pair(s)" in none["note"]


def test_bootstrap_ci_is_reproducible_with_its_seed():
    values = np.random.default_rng(1).normal(size=25)
    assert bootstrap_mean_ci(values, seed=3) == bootstrap_mean_ci(values, seed=3)
    assert bootstrap_mean_ci(values, seed=3) != bootstrap_mean_ci(values, seed=4)
    assert paired_comparison(values, values * 0.5, seed=7) == paired_comparison(
        values, values * 0.5, seed=7
    )


def test_bootstrap_ci_covers_the_true_mean_in_most_trials():
    # Percentile bootstrap of a mean of 30 normal values: nominal 95%, a little less in
    # practice at this n; at least 90% of 200 trials.
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(200):
        low, high = bootstrap_mean_ci(rng.normal(1.0, 2.0, 30), n_boot=1000, seed=trial)
        covered += low <= 1.0 <= high
    assert covered >= 180


def test_bootstrap_ci_does_not_depend_on_the_chunking():
    # 300 resamples of 5,000 values are drawn in two chunks; the same generator drawing all
    # indices at once must give the same interval.
    values = np.random.default_rng(3).random(5000)
    indices = np.random.default_rng(0).integers(0, 5000, size=(300, 5000))
    expected = np.quantile(values[indices].mean(axis=1), [0.025, 0.975])
    assert bootstrap_mean_ci(values, n_boot=300, seed=0) == pytest.approx(
        tuple(expected), rel=0, abs=1e-12
    )


def test_bootstrap_ci_edge_cases():
    assert bootstrap_mean_ci([]) is None
    assert bootstrap_mean_ci([0.3]) is None
    assert bootstrap_mean_ci([0.3, np.nan]) is None
    assert bootstrap_mean_ci([0.3, 0.3, np.nan]) == (0.3, 0.3)
    # Two values: each resampled mean is 1, 1.5 or 2.
    low, high = bootstrap_mean_ci([1.0, 2.0])
    assert (low, high) == (1.0, 2.0)


def test_wilson_interval_hand_values():
    # 8/10 at 95%: z = 1.95996, z^2 = 3.84146; centre (0.8 + 0.19207) / 1.38415 = 0.71674;
    # half 1.95996 / 1.38415 * sqrt(0.016 + 0.0096036) = 0.22658 -> (0.4902, 0.9433).
    assert proportion_ci(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-5)
    # 0/10: (0, z^2 / (10 + z^2)) = (0, 0.2775); 10/10 mirrors it.
    assert proportion_ci(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-5)
    assert proportion_ci(10, 10) == pytest.approx((0.7225, 1.0), abs=5e-5)
    # A 90% interval is narrower and still holds the estimate.
    low, high = proportion_ci(8, 10, alpha=0.1)
    assert 0.4902 < low < 0.8 < high < 0.9433


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: paired_comparison([1.0, 2.0], [1.0]),
            r"a has shape \(2,\) but b has shape \(1,\)",
        ),
        (lambda: paired_comparison([[1.0]], [[1.0]]), "one-dimensional"),
        (lambda: paired_comparison([1.0], [1.0], n_boot=0), "n_boot must be a positive integer"),
        (lambda: paired_comparison([1.0], [1.0], n_boot=True), "n_boot must be a positive integer"),
        (lambda: paired_comparison([1.0], [1.0], alpha=1.0), r"alpha must be in \(0, 1\)"),
        (lambda: bootstrap_mean_ci([1.0, 2.0], n_boot=10.5), "n_boot must be a positive integer"),
        (lambda: bootstrap_mean_ci([1.0, 2.0], alpha=0), "alpha must be in"),
        (lambda: proportion_ci(1, 0), "n must be at least 1"),
        (lambda: proportion_ci(11, 10), r"successes must be in \[0, n=10\]"),
        (lambda: proportion_ci(-1, 10), "successes must be in"),
        (lambda: proportion_ci(5, 10, alpha=-0.1), "alpha must be in"),
    ],
)
def test_bad_input_is_refused_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
