"""Localization metrics on hand-computed maps, against second implementations and their random
baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fracdet.data.formats import Box
from fracdet.data.geometry import boxes_mask
from fracdet.explain.localization import (
    RankedMap,
    box_area_share,
    coverage_at_percentile,
    coverage_at_percentiles,
    energy_in_box,
    localization_scores,
    near_mask,
    pointing_game,
    pointing_game_baseline,
    rank_correlation,
    topk_intersection,
)

# 4x4 map, box = rows 0-1, cols 0-1 (4 pixels, marked *). Distinct positive values; one
# negative at (0, 2) that must not count as mass.
#    0.9*  0.1*  -1.0  0.0
#    0.8*  0.7*   0.0  0.2
#    0.0   0.3    0.6  0.0
#    0.0   0.0    0.0  0.5
ATTR = np.array(
    [
        [0.9, 0.1, -1.0, 0.0],
        [0.8, 0.7, 0.0, 0.2],
        [0.0, 0.3, 0.6, 0.0],
        [0.0, 0.0, 0.0, 0.5],
    ]
)
BOX = np.zeros((4, 4), dtype=bool)
BOX[:2, :2] = True


# ---------------------------------------------------------------- coverage


def test_coverage_hand_computed():
    # 16 pixels. p=5: k = ceil(0.8) = 1 -> {0.9}: 1 of 4 box pixels -> 0.25.
    # p=25: k = 4 -> {0.9, 0.8, 0.7, 0.6}: 3 in the box -> 0.75.
    # p=50: k = 8 -> {0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.2, 0.1}: all 4 box pixels -> 1.0.
    assert coverage_at_percentiles(ATTR, BOX) == {5.0: 0.25, 25.0: 0.75, 50.0: 1.0}
    assert coverage_at_percentile(ATTR, BOX, 25) == 0.75


def test_coverage_counts_the_ties_at_the_cut_in_proportion():
    # All zero but (1, 0) and (1, 3). Box = column 3. p=25: k = 4 -> the two ones (one in the
    # box), then 2 of the 14 tied zeros, 3 of which are in the box: 3 * 2/14 more box pixels.
    # (1 + 3/7) / 4 = 5/14. Row-major order would take (0, 0), (0, 1) -> 1/4; the reverse 2/4.
    attr = np.zeros((4, 4))
    attr[1, 0] = attr[1, 3] = 1.0
    column = np.zeros((4, 4), dtype=bool)
    column[:, 3] = True
    assert coverage_at_percentile(attr, column, 25) == pytest.approx(5 / 14)
    # A constant map covers any box at exactly p%, wherever the box is.
    first_row = np.zeros((4, 4), dtype=bool)
    first_row[0] = True
    for mask in (first_row, ~first_row, column):
        assert coverage_at_percentiles(np.zeros((4, 4)), mask) == pytest.approx(
            {5.0: 1 / 16, 25.0: 0.25, 50.0: 0.5}
        )  # p=5: k = 1 of 16 tied pixels


def test_coverage_of_a_box_at_the_border():
    # The box runs past the bottom-right corner; the mask keeps rows 2-3, cols 2-3:
    # values 0.6, 0.0, 0.0, 0.5. p=25: k = 4 -> {0.9, 0.8, 0.7, 0.6}: 1 of 4 -> 0.25.
    # p=50: k = 8 -> adds 0.5, 0.3, 0.2, 0.1: 2 of 4 -> 0.5.
    corner = boxes_mask([Box(2.0, 2.0, 10.0, 10.0)], 4, 4)
    assert corner.sum() == 4 and corner[2:, 2:].all()
    assert coverage_at_percentiles(ATTR, corner, (25, 50)) == {25.0: 0.25, 50.0: 0.5}


def test_coverage_at_100_percent_is_one():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((9, 7)) < 0.2
        mask[0, 0] = True
        assert coverage_at_percentile(rng.normal(size=(9, 7)), mask, 100) == 1.0


def test_map_equal_to_the_mask_covers_it_at_the_box_share():
    assert box_area_share(BOX) == 0.25
    assert coverage_at_percentile(BOX.astype(float), BOX, 25) == 1.0
    # One pixel fewer than the box: 3 of 4.
    assert coverage_at_percentile(BOX.astype(float), BOX, 3 / 16 * 100) == 0.75


def test_top_k_is_not_inflated_by_float_error():
    # 7 box pixels in 100; 7/100 * 100 is 7.000000000000001 in floats. A brighter pixel
    # outside the box ranks first, so k = 7 sees 6 of 7 box pixels, while a k of 8 would
    # (wrongly) see all 7.
    mask = np.zeros((10, 10), dtype=bool)
    mask[0, :7] = True
    attr = mask.astype(float)
    attr[9, 9] = 2.0
    assert coverage_at_percentile(attr, mask, 7) == pytest.approx(6 / 7)


def test_random_maps_cover_p_percent_on_average():
    # 1000 pixels, so k = p * 10 exactly and the expected coverage is exactly p/100.
    rng = np.random.default_rng(1)
    mask = np.zeros((25, 40), dtype=bool)
    mask[5:15, 10:20] = True
    scores = np.array(
        [list(coverage_at_percentiles(rng.random((25, 40)), mask).values()) for _ in range(400)]
    )
    assert np.abs(scores.mean(axis=0) - np.array([0.05, 0.25, 0.50])).max() < 0.01


def slow_coverage(attr: np.ndarray, mask: np.ndarray, p: float) -> float:
    """The rule before ties counted in proportion: a pixel's rank is the number of pixels
    strictly above it plus the equal pixels before it in row-major order; it is in the top k
    when its rank < k. Without ties, the rank is just the number of pixels above it."""
    flat, inside = attr.ravel(), mask.ravel()
    n = flat.size
    k = max(1, math.ceil(round(p * n / 100, 6)))
    index = np.arange(n)
    above = (flat[None, :] > flat[:, None]).sum(axis=1)
    equal_before = ((flat[None, :] == flat[:, None]) & (index[None, :] < index[:, None])).sum(
        axis=1
    )
    top = above + equal_before < k
    return (top & inside).sum() / inside.sum()


maps_and_masks = st.tuples(st.integers(1, 8), st.integers(1, 8)).flatmap(
    lambda shape: st.tuples(
        arrays(np.float64, shape, elements=st.integers(-3, 3).map(float)),
        arrays(np.bool_, shape).filter(lambda m: m.any()),
    )
)
#: Maps without ties (distinct values), for the properties that hold only there.
untied_maps_and_masks = st.tuples(st.integers(1, 8), st.integers(1, 8)).flatmap(
    lambda shape: st.tuples(
        arrays(np.float64, shape, elements=st.integers(-1000, 1000).map(float), unique=True),
        arrays(np.bool_, shape).filter(lambda m: m.any()),
    )
)


@settings(max_examples=200, deadline=None)
@given(data=untied_maps_and_masks, p=st.floats(0.1, 100.0))
def test_without_ties_coverage_is_the_old_row_major_count_exactly(data, p):
    attr, mask = data
    assert coverage_at_percentile(attr, mask, p) == slow_coverage(attr, mask, p)
    # and the pointing game is the old bool of the (single) maximum
    peak = np.unravel_index(int(np.argmax(attr)), attr.shape)
    assert pointing_game(attr, mask, tolerance_px=0) == float(mask[peak])


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**16), p=st.sampled_from([5, 10, 25, 50, 75]))
def test_coverage_matches_a_threshold_without_ties(seed, p):
    # Third way, for maps without ties: the top p% are the pixels at or above the k-th largest
    # value.
    rng = np.random.default_rng(seed)
    attr = rng.normal(size=(12, 10))
    mask = rng.random((12, 10)) < 0.3
    mask[3, 4] = True
    k = math.ceil(p * 120 / 100)
    threshold = np.sort(attr.ravel())[::-1][k - 1]
    expected = (mask & (attr >= threshold)).sum() / mask.sum()
    assert coverage_at_percentile(attr, mask, p) == pytest.approx(expected)


# ---------------------------------------------------------------- energy


def test_energy_in_box_hand_computed():
    # Positive mass 0.9 + 0.1 + 0.8 + 0.7 + 0.2 + 0.3 + 0.6 + 0.5 = 4.1; inside the box
    # 0.9 + 0.1 + 0.8 + 0.7 = 2.5; the -1.0 does not count -> 2.5 / 4.1.
    assert energy_in_box(ATTR, BOX) == pytest.approx(2.5 / 4.1)


def test_energy_of_a_map_zero_outside_the_box_is_one():
    attr = np.where(BOX, 3.0, 0.0)
    attr[0, 0] = -2.0  # negative inside counts for nothing either way
    assert energy_in_box(attr, BOX) == 1.0
    # Negative everywhere outside the box: still all positive mass is inside.
    assert energy_in_box(np.where(BOX, 1.0, -5.0), BOX) == 1.0


def test_energy_without_positive_mass_is_nan():
    assert math.isnan(energy_in_box(np.zeros((4, 4)), BOX))
    assert math.isnan(energy_in_box(-np.ones((4, 4)), BOX))


def test_uniform_map_puts_the_box_area_share_in_the_box():
    mask = boxes_mask([Box(1.0, 1.0, 4.0, 3.0)], 5, 6)  # 3 x 2 = 6 of 30 pixels
    assert box_area_share(mask) == pytest.approx(6 / 30)
    assert energy_in_box(np.ones((5, 6)), mask) == pytest.approx(box_area_share(mask))


# ---------------------------------------------------------------- pointing game


def test_pointing_game_hand_computed():
    assert pointing_game(ATTR, BOX, tolerance_px=0)  # max 0.9 at (0, 0), in the box
    # Single box pixel (0, 0); peak at (2, 1): distance sqrt(2^2 + 1^2) = 2.236.
    mask = np.zeros((5, 5), dtype=bool)
    mask[0, 0] = True
    attr = np.zeros((5, 5))
    attr[2, 1] = 1.0
    assert not pointing_game(attr, mask, tolerance_px=0)
    assert not pointing_game(attr, mask, tolerance_px=2.2)
    assert pointing_game(attr, mask, tolerance_px=2.3)
    assert pointing_game(attr, mask)  # default 15 px


def test_pointing_game_with_tied_maxima_scores_the_share_that_hits():
    # Two tied maxima, (0, 0) and (4, 4): a box on either one wins half the game, wherever it is
    # in row-major order (row-major first would give 1 and 0); one on both wins it all.
    attr = np.zeros((5, 5))
    attr[0, 0] = attr[4, 4] = 1.0
    for corner in ((0, 0), (4, 4)):
        mask = np.zeros((5, 5), dtype=bool)
        mask[corner] = True
        assert pointing_game(attr, mask, tolerance_px=0) == 0.5
    assert pointing_game(attr, np.eye(5, dtype=bool), tolerance_px=0) == 1.0
    # A constant map: every pixel is a maximum; the score is the zone's share of the image.
    mask = np.zeros((5, 5), dtype=bool)
    mask[0, 0] = True
    assert pointing_game(np.ones((5, 5)), mask, tolerance_px=1) == 3 / 25


def test_pointing_baseline_hand_computed():
    # Box pixel (0, 0) in the corner of a 5x5 image. Within 0: 1 pixel; within 1: (0,0),
    # (0,1), (1,0) -> 3; within 1.5: adds (1,1) at sqrt(2) -> 4; within 100: all 25.
    mask = np.zeros((5, 5), dtype=bool)
    mask[0, 0] = True
    assert pointing_game_baseline(mask, tolerance_px=0) == 1 / 25
    assert pointing_game_baseline(mask, tolerance_px=1) == 3 / 25
    assert pointing_game_baseline(mask, tolerance_px=1.5) == 4 / 25
    assert pointing_game_baseline(mask, tolerance_px=100) == 1.0


@settings(max_examples=100, deadline=None)
@given(data=maps_and_masks, tolerance=st.floats(0, 6))
def test_pointing_game_matches_a_direct_distance(data, tolerance):
    # each maximum's distance to the nearest box pixel; the score: the share within tolerance
    attr, mask = data
    peaks = np.argwhere(attr == attr.max())
    boxes = np.argwhere(mask)
    nearest = np.sqrt(((peaks[:, None, :] - boxes[None, :, :]) ** 2).sum(-1)).min(axis=1)
    assert pointing_game(attr, mask, tolerance_px=tolerance) == pytest.approx(
        np.mean(nearest <= tolerance)
    )


# ---------------------------------------------------------------- stability between two maps


def numpy_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Second implementation: average ranks with numpy, then Pearson."""

    def ranks(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(x.size)
        r[order] = np.arange(1, x.size + 1)
        values, inverse = np.unique(x, return_inverse=True)
        return (np.bincount(inverse, r) / np.bincount(inverse))[inverse]

    return float(np.corrcoef(ranks(a.ravel()), ranks(b.ravel()))[0, 1])


def test_rank_correlation_hand_computed():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    # Ranks 1 2 3 4 vs 1 3 2 4: sum d^2 = 2; rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8.
    assert rank_correlation(a, np.array([[1.0, 3.0], [2.0, 4.0]])) == pytest.approx(0.8)


def test_rank_correlation_agrees_with_numpy_ranks_and_scipy():
    rng = np.random.default_rng(2)
    for _ in range(10):
        a = rng.normal(size=(6, 7))
        b = a + rng.normal(size=(6, 7))
        tied = np.round(b)  # ties get average ranks in both
        for other in (b, tied):
            ours = rank_correlation(a, other)
            assert ours == pytest.approx(numpy_spearman(a, other))
            assert ours == pytest.approx(scipy.stats.spearmanr(a.ravel(), other.ravel()).statistic)


def test_rank_correlation_of_a_constant_map_is_nan():
    assert math.isnan(rank_correlation(np.ones((3, 3)), np.arange(9.0).reshape(3, 3)))
    assert math.isnan(rank_correlation(np.arange(9.0).reshape(3, 3), np.zeros((3, 3))))


def test_topk_intersection():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(8, 8))
    assert topk_intersection(a, a) == 1.0
    assert topk_intersection(a, a.copy(), p=5) == 1.0
    # p=50 of 4 pixels: k = 2. Top of a = {(0,0), (0,1)}, top of b = {(1,1), (0,1)} -> 1 / 2.
    assert (
        topk_intersection(
            np.array([[4.0, 3.0], [2.0, 1.0]]), np.array([[1.0, 3.0], [2.0, 4.0]]), p=50
        )
        == 0.5
    )
    # Reversed order: no overlap.
    assert (
        topk_intersection(
            np.array([[4.0, 3.0], [2.0, 1.0]]), np.array([[1.0, 2.0], [3.0, 4.0]]), p=50
        )
        == 0.0
    )


# ---------------------------------------------------------------- all at once


def test_localization_scores_hand_computed():
    scores = localization_scores(ATTR, BOX, tolerance_px=0)
    assert scores == pytest.approx(
        {
            "coverage@5": 0.25,
            "coverage@25": 0.75,
            "coverage@50": 1.0,
            # k = |box| = 4: the top 4 as coverage@25 -> 3 of 4
            "relevance_rank_accuracy": 0.75,
            # 0.9, 0.8, 0.7 beat all 12 outside pixels, 0.1 beats -1.0 and the seven 0.0s:
            # (3 * 12 + 8) / (4 * 12)
            "localization_auc": 44 / 48,
            "energy_in_box": 2.5 / 4.1,
            "pointing_game": 1.0,
            "box_area_share": 0.25,
            "pointing_baseline": 0.25,
        }
    )
    # Peak (0, 0) one pixel from a box at rows 1-2, cols 1-2 (its corner (1, 1) is sqrt(2) away).
    other = np.zeros((4, 4), dtype=bool)
    other[1:3, 1:3] = True
    assert localization_scores(ATTR, other, tolerance_px=1)["pointing_game"] == 0.0
    scores = localization_scores(ATTR, other, percentiles=(12.5,), tolerance_px=1.5)
    assert scores["pointing_game"] == 1.0
    # k = 2 -> {0.9, 0.8}: neither in rows 1-2, cols 1-2 -> 0.
    assert scores["coverage@12.5"] == 0.0
    # Within 1.5 of the 2x2 block in the middle: every pixel of the 4x4 image.
    assert scores["pointing_baseline"] == 1.0


# ---------------------------------------------------------------- one sort per map


@settings(max_examples=50, deadline=None)
@given(data=maps_and_masks, other=st.integers(0, 2**32 - 1), tolerance=st.floats(0, 4))
def test_a_ranked_map_scores_as_the_plain_map(data, other, tolerance):
    """The audit sorts each map once (RankedMap) and computes each mask's zone once (near_mask):
    same numbers."""
    attr, mask = data
    twin = np.round(attr + np.random.default_rng(other).normal(size=attr.shape), 1)  # rounded: ties
    ranked, ranked_twin = RankedMap.of(attr), RankedMap.of(twin)
    plain = localization_scores(attr, mask, percentiles=(5, 25, 50), tolerance_px=tolerance)
    shared = localization_scores(
        ranked,
        mask,
        percentiles=(5, 25, 50),
        tolerance_px=tolerance,
        near=near_mask(mask, tolerance_px=tolerance),
    )
    assert shared == pytest.approx(plain, nan_ok=True)
    assert topk_intersection(ranked, ranked_twin, p=25) == topk_intersection(attr, twin, p=25)
    if np.ptp(attr) > 0 and np.ptp(twin) > 0:
        assert rank_correlation(ranked, ranked_twin) == pytest.approx(
            scipy.stats.spearmanr(attr.ravel(), twin.ravel()).statistic
        )


def test_average_ranks_are_scipys_from_the_top():
    attr = np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 0.5]])
    # from the top: the two 3s share ranks 0 and 1, the two 2s ranks 2 and 3
    np.testing.assert_array_equal(RankedMap.of(attr).average_ranks, [0.5, 4.0, 0.5, 2.5, 2.5, 5.0])
    np.testing.assert_array_equal(
        RankedMap.of(attr).average_ranks, attr.size - scipy.stats.rankdata(attr.ravel())
    )
    assert RankedMap.of(attr).order.tolist() == [0, 2, 3, 4, 1, 5]  # ties: row-major order


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: coverage_at_percentile(ATTR, BOX[:3], 25),
            r"attr has shape \(4, 4\) but mask has shape \(3, 4\)",
        ),
        (lambda: coverage_at_percentile(ATTR, BOX.astype(int), 25), "mask must be a bool array"),
        (
            lambda: coverage_at_percentile(ATTR, np.zeros((4, 4), bool), 25),
            r"mask of shape \(4, 4\) is empty",
        ),
        (
            lambda: coverage_at_percentile(ATTR[None], BOX, 25),
            r"non-empty \(H, W\) map, got shape \(1, 4, 4\)",
        ),
        (lambda: coverage_at_percentile(np.zeros((0, 4)), BOX, 25), r"got shape \(0, 4\)"),
        (lambda: coverage_at_percentile(np.where(BOX, np.nan, 0.0), BOX, 25), "NaN or infinite"),
        (lambda: coverage_at_percentile(BOX, BOX, 25), "real-valued map"),
        (lambda: coverage_at_percentile(ATTR, BOX, 0), r"percentile must be in \(0, 100\]"),
        (lambda: coverage_at_percentiles(ATTR, BOX, (5, 101)), r"percentile must be in \(0, 100\]"),
        (lambda: energy_in_box(ATTR, np.zeros((4, 4), bool)), "is empty"),
        (lambda: energy_in_box(ATTR, BOX[None]), r"\(H, W\) array, got shape \(1, 4, 4\)"),
        (lambda: box_area_share(np.zeros((2, 2), bool)), "is empty"),
        (lambda: pointing_game(ATTR, BOX, tolerance_px=-1), "tolerance_px must be >= 0"),
        (lambda: pointing_game(ATTR, BOX.T[:2]), "but mask has shape"),
        (
            lambda: pointing_game_baseline(BOX, tolerance_px=float("nan")),
            "tolerance_px must be >= 0",
        ),
        (
            lambda: rank_correlation(ATTR, ATTR[:2]),
            r"a has shape \(4, 4\) but b has shape \(2, 4\)",
        ),
        (lambda: rank_correlation(ATTR, np.full((4, 4), np.inf)), "b of shape"),
        (lambda: topk_intersection(ATTR, ATTR[:, :2]), "but b has shape"),
        (lambda: topk_intersection(ATTR, ATTR, p=-5), "percentile must be in"),
        (lambda: localization_scores(ATTR, ~np.ones((4, 4), bool)), "is empty"),
        (lambda: localization_scores(ATTR, BOX, tolerance_px=-0.5), "tolerance_px"),
        (
            lambda: localization_scores(ATTR, BOX, near=near_mask(BOX)[:2]),
            r"near must be a bool mask of shape \(4, 4\)",
        ),
        (
            lambda: localization_scores(ATTR, BOX, near=BOX.astype(np.uint8)),
            "near must be a bool mask",
        ),
        (lambda: near_mask(np.zeros((4, 4), bool)), "is empty"),
        (lambda: RankedMap.of(np.full((2, 2), np.nan)), "NaN or infinite"),
        (lambda: rank_correlation(RankedMap.of(ATTR), RankedMap.of(ATTR[:2])), "but b has shape"),
    ],
)
def test_bad_input_is_refused_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
